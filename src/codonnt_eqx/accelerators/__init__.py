"""Compiling for GPUs and TPUs without them ("deviceless"): targets, abstract arguments, what a
compiled program holds, and the memory planner built on them."""

from ..model import model_sizes as model_sizes  # moved to model/ (the one size table)
from ._compile import DEVICELESS_COMPILER_OPTIONS as DEVICELESS_COMPILER_OPTIONS
from ._compile import abstract as abstract
from ._compile import collectives as collectives
from ._compile import compile_traced as compile_traced
from ._compile import custom_call_targets as custom_call_targets
from ._compile import host_callbacks as host_callbacks
from ._compile import kernel_calls as kernel_calls
from ._plan import WORKLOADS as WORKLOADS
from ._plan import CompiledWorkload as CompiledWorkload
from ._plan import MemoryPlan as MemoryPlan
from ._plan import compile_workload as compile_workload
from ._plan import largest_batch as largest_batch
from ._plan import plan_memory as plan_memory
from ._targets import TARGETS as TARGETS
from ._targets import AcceleratorUnavailableError as AcceleratorUnavailableError
from ._targets import Target as Target
from ._targets import compiler_available as compiler_available
from ._targets import devices as devices
from ._targets import prepare_environment as prepare_environment
from ._targets import target as target
