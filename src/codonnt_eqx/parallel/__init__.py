"""Where computations run: the one device mesh, and jitting pure steps so that they also compile
ahead of time from shapes alone."""

from ._lowerable_jit import LowerableJit as LowerableJit
from ._lowerable_jit import is_dynamic as is_dynamic
from ._lowerable_jit import mesh_context as mesh_context
