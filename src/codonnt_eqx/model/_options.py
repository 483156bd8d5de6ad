"""Run options: how a model computes (attention implementation, compute dtype, remat), not what.

They are static fields of the model and of the layers that read them, set together by
`with_options` (in the spirit of `eqx.nn.inference_mode`) and validated once, here. Every entry
point (pretraining, fine-tuning, embedding, scoring, the CLI) takes the same three options and
hands them to `RunOptions`, so one value is accepted or refused the same way everywhere.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, TypeVar

import equinox as eqx
import jax
import jax.numpy as jnp

# kernels/ sits at the repository's top level and installs as codonnt_eqx.kernels, where a
# type checker reading src/ cannot find it.
from ..kernels import IMPLEMENTATIONS as _KERNEL_IMPLEMENTATIONS  # pyright: ignore[reportMissingImports]

IMPLEMENTATIONS: tuple[str, ...] = tuple(_KERNEL_IMPLEMENTATIONS)

# Compute dtypes by name; parameters stay float32 whatever is chosen.
DTYPES: dict[str, Any] = {
    "float32": jnp.float32,
    "bfloat16": jnp.bfloat16,
    "float16": jnp.float16,
}

_T = TypeVar("_T")


def dtype_name(dtype: Any) -> str:
    """The name in `DTYPES` of a dtype given by name (`"bfloat16"`) or as a dtype
    (`jnp.bfloat16`, `np.dtype("float32")`); `ValueError` for anything else."""
    if isinstance(dtype, str) and dtype in DTYPES:
        return dtype
    try:
        name = jnp.dtype(dtype).name
    except TypeError:
        name = None
    if isinstance(dtype, bool) or name not in DTYPES:
        raise ValueError(
            f"dtype must be one of {tuple(DTYPES)} (a name or a jnp dtype), got {dtype!r}"
        )
    return name


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How a model runs. Changes speed and memory, not results beyond dtype rounding.

    - `attention`: `"auto"` (Pallas kernels on GPU/TPU, query-blocked plain JAX on CPU),
      `"pallas"`, `"blocked"`, `"xla"`, `"cudnn"` or `"reference"`.
    - `dtype`: compute dtype of the matmuls, by name (`"float32"`, `"bfloat16"`, `"float16"`)
      or as a jnp dtype; stored as its name. (float64 would silently be float32 unless JAX's
      x64 mode is on, so it is refused.) LayerNorm and softmax statistics
      stay float32, parameters stay float32.
    - `remat`: rematerialise each block in the backward pass (less memory in training).
    """

    # Loosely annotated on purpose: a bad value is this class's ValueError, the same in every
    # entry point, not whatever a runtime type checker makes of a Literal.
    attention: str = "auto"
    dtype: Any = "float32"
    remat: bool = False

    def __post_init__(self):
        if not isinstance(self.attention, str) or self.attention not in IMPLEMENTATIONS:
            raise ValueError(f"attention must be one of {IMPLEMENTATIONS}, got {self.attention!r}")
        object.__setattr__(self, "dtype", dtype_name(self.dtype))
        if not isinstance(self.remat, bool):
            raise TypeError(f"remat must be True or False, got {self.remat!r}")

    @property
    def compute_dtype(self) -> Any:
        """The jnp dtype of `dtype`."""
        return DTYPES[self.dtype]

    def replace(self, **changes: Any) -> RunOptions:
        """These options with `changes` (a value of None keeps the current one), validated."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


def _holds_options(node: Any) -> bool:
    return isinstance(node, eqx.Module) and isinstance(getattr(node, "options", None), RunOptions)


def _rebuilt(module: eqx.Module, changes: dict[str, Any]) -> eqx.Module:
    # What Equinox's own unflattening does: a new instance with its fields set directly, so a
    # static field can change without running the layer's constructor again.
    new = object.__new__(type(module))
    for field in dataclasses.fields(module):
        object.__setattr__(new, field.name, changes.get(field.name, getattr(module, field.name)))
    return new


def _set_options(tree: _T, options: RunOptions) -> _T:
    def visit(node):
        if not _holds_options(node):
            return node
        changes = {
            f.name: _set_options(getattr(node, f.name), options)
            for f in dataclasses.fields(node)
            if not f.metadata.get("static", False)
        }
        changes["options"] = options
        return _rebuilt(node, changes)

    return jax.tree.map(visit, tree, is_leaf=_holds_options)


def options_of(tree: Any) -> RunOptions | None:
    """The run options of the first module in `tree` that holds them (None if none does)."""
    for node in jax.tree.leaves(tree, is_leaf=_holds_options):
        if _holds_options(node):
            return node.options
    return None


def with_options(
    tree: _T,
    *,
    attention: str | None = None,
    dtype: Any = None,
    remat: bool | None = None,
) -> _T:
    """`tree` (a model, or any pytree holding one, e.g. a fine-tuned model with its head) with
    its run options changed: every layer that reads them gets the same new `RunOptions`.

    An argument left at None keeps the model's current value; a bad value is a `ValueError`
    naming it, raised here and not at the first call. The options are static fields, part of
    the tree's structure: set them before `optimizer.init(eqx.filter(model, eqx.is_array))`,
    whose state mirrors that structure.

    ```python
    fast = with_options(model, attention="pallas", dtype="bfloat16")
    out = jax.vmap(fast)(tokens)
    ```
    """
    current = options_of(tree)
    if current is None:
        raise ValueError("found no module with run options in the tree (not a model?)")
    return _set_options(tree, current.replace(attention=attention, dtype=dtype, remat=remat))


def legacy_options(caller: str, *, stacklevel: int = 3, **options: Any) -> dict[str, Any]:
    """The run options `caller` was given as keyword arguments (the old way, kept for one
    release): those not None, validated, with a `DeprecationWarning` if there are any."""
    given = {k: v for k, v in options.items() if v is not None}
    if given:
        RunOptions(**given)  # a bad value fails here, not inside a first compiled step
        warnings.warn(
            f"passing {', '.join(sorted(given))} to {caller} is deprecated; set run options "
            "once on the model with codonnt_eqx.with_options(model, ...)",
            DeprecationWarning,
            stacklevel=stacklevel,
        )
    return given


def with_legacy_options(tree: _T, caller: str, **options: Any) -> _T:
    """`tree` with the run options that `caller` was given the old way (`legacy_options`);
    unchanged when none was given."""
    given = legacy_options(caller, stacklevel=4, **options)
    return with_options(tree, **given) if given else tree
