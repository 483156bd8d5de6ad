"""Small real inputs shipped with the package, for the README's commands and first tries:
`example_path(name)` in Python, `codonnt-eqx examples DIR` on the command line."""

from ._files import EXAMPLES as EXAMPLES
from ._files import copy_examples as copy_examples
from ._files import example_path as example_path
