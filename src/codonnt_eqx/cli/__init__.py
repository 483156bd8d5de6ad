"""The `codonnt-eqx` command line: one file per subcommand, shared options declared once."""

from ._main import main as main
from ._main import run as run
