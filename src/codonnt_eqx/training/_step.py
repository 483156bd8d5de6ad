"""The masked-language-model training step: a pure function of (model, optimiser state, token
batch, key), jitted once, with gradient accumulation over micro-batches."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
from jaxtyping import Array, Float, Int, PRNGKeyArray

from ..model import NucleotideTransformer, legacy_options, with_options
from ..parallel import LowerableJit, is_dynamic
from ..tokenizers import Tokenizer
from ._loss import LossMetrics, masked_lm_metrics, nucleotides_per_token
from ._masking import mask_tokens, maskable_tokens


@dataclasses.dataclass(frozen=True, eq=False)
class MaskedLM:
    """The objective: BERT masking of the tokens a tokenizer calls maskable, cross-entropy on the
    selected positions. Build it with `MaskedLM.for_tokenizer(tokenizer)`.

    `maskable` (bool [vocab]) and `nucleotides` (int [vocab], for bits per nucleotide) are NumPy
    constants of the computation.
    """

    maskable: np.ndarray
    nucleotides: np.ndarray
    mask_id: int
    rate: float = 0.15
    mask_prob: float = 0.8
    random_prob: float = 0.1
    span: int = 1

    @classmethod
    def for_tokenizer(cls, tokenizer: Tokenizer, **rates) -> MaskedLM:
        """The objective for `tokenizer`'s special ids; `rates`: `rate`, `mask_prob`,
        `random_prob` (defaults 0.15 / 0.8 / 0.1: Codon-NT's)."""
        return cls(
            maskable_tokens(tokenizer),
            nucleotides_per_token(tokenizer),
            tokenizer.mask_id,
            span=tokenizer.mask_span,
            **rates,
        )

    def mask(self, key: PRNGKeyArray, tokens: Int[Array, " length"]):
        return mask_tokens(
            key,
            tokens,
            maskable=self.maskable,
            mask_id=self.mask_id,
            rate=self.rate,
            mask_prob=self.mask_prob,
            random_prob=self.random_prob,
            span=self.span,
        )


class StepMetrics(eqx.Module):
    """What one step reports: the loss metrics summed over the whole (accumulated) batch, and
    the global norm of the gradient of the mean loss."""

    loss: LossMetrics
    grad_norm: Float[Array, ""]


def _add(a, b):
    return jax.tree.map(jnp.add, a, b)


def make_train_step(
    optimizer: optax.GradientTransformation,
    objective: MaskedLM,
    *,
    dtype=None,
    attention: str | None = None,
    remat: bool | None = None,
    donate: bool = True,
) -> TrainStep:
    """A jitted training step `step(model, opt_state, tokens, key) -> (model, opt_state,
    StepMetrics)`.

    **Arguments:**

    - `optimizer`: an optax transformation, e.g. `codon_nt_optimizer()`; its state comes from
      `optimizer.init(eqx.filter(model, eqx.is_array))`.
    - `objective`: a `MaskedLM`.
    - `dtype`, `attention`, `remat`: deprecated (a `DeprecationWarning`): the step runs the
      model with the model's own run options; set them with `with_options(model, ...)`
      (bfloat16 compute is mixed precision: parameters, gradients and optimiser state stay
      float32).
    - `donate`: reuse the buffers of the model and optimiser state passed in (they are invalid
      after the call; use the returned ones).

    The step's `tokens` are int32 [accumulation, batch, length]: the gradient is that of the
    mean loss over every selected position of the whole `accumulation x batch`, accumulated one
    micro-batch `[batch, length]` at a time, so memory is that of one micro-batch. `key` masks
    the batch; derive it from the step (`jax.random.fold_in(key, step)`) for reproducible runs.
    Example `i` is masked with `fold_in(key, example_ids[i])`; `example_ids` (int
    [accumulation, batch], default `arange`) are the examples' indices in the global batch, so
    the same examples get the same masks however the batch is laid out.
    Sharded inputs (see `make_mesh`) give sharded computation; nothing here names devices.
    """
    # The old keyword arguments: validated and warned about now, applied inside the step.
    legacy = legacy_options("make_train_step", dtype=dtype, attention=attention, remat=remat)

    def micro(static, params, tokens, example_ids, key):
        # One key per example, from its index in the global batch: the masks do not depend on
        # how the batch is split into micro-batches, devices or processes.
        keys = jax.vmap(functools.partial(jr.fold_in, key))(example_ids)
        batch = jax.vmap(objective.mask)(keys, tokens)

        def loss_sum(params):
            model = eqx.combine(params, static)
            if legacy:
                model = with_options(model, **legacy)
            logits = jax.vmap(model)(batch.inputs).logits
            metrics = masked_lm_metrics(
                logits, batch.targets, batch.selected, objective.nucleotides
            )
            return metrics.loss_sum, metrics

        (_, metrics), grads = jax.value_and_grad(loss_sum, has_aux=True)(params)
        return grads, metrics

    def step(model, opt_state, tokens, key, example_ids):
        params, static = eqx.partition(model, eqx.is_array)
        run = functools.partial(micro, static, params, key=key)
        zeros = jax.tree.map(
            lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(run, tokens[0], example_ids[0])
        )

        def accumulate(total, xs):
            return _add(total, run(*xs)), None

        # Sums over micro-batches, divided once by the total count: exactly the gradient of
        # the mean over the whole batch, whatever the split.
        (grads, metrics), _ = jax.lax.scan(accumulate, zeros, (tokens, example_ids))
        count = jnp.maximum(metrics.num_selected, 1).astype(jnp.float32)
        grads = jax.tree.map(lambda g: g / count, grads)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = eqx.apply_updates(params, updates)
        grad_norm = jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in jax.tree.leaves(grads)))
        return params, opt_state, StepMetrics(metrics, grad_norm)

    return TrainStep(LowerableJit(step, donate_argnums=(0, 1) if donate else ()))


class TrainStep:
    """The step `make_train_step` builds: `step(model, opt_state, tokens, key,
    example_ids=None) -> (model, opt_state, StepMetrics)`, jitted once per shape;
    `step.trace(...)` takes the same arguments with `jax.ShapeDtypeStruct`s for arrays (e.g.
    `eqx.filter_eval_shape` of the model and of `optimizer.init`) and returns the traced step,
    to lower and compile ahead of time: `.lower(lowering_platforms=("cuda",)).compile()`.
    `step.compile(...)` (same arguments, abstract or concrete) compiles now and returns a step
    called like this one, for inputs of those shapes, that never recompiles."""

    def __init__(self, jitted: LowerableJit | Callable):
        self._jitted = jitted

    @staticmethod
    def _arguments(tokens, example_ids):
        if len(tokens.shape) != 3:
            raise ValueError(f"tokens must be [accumulation, batch, length], got {tokens.shape}")
        if example_ids is None:
            example_ids = np.arange(tokens.shape[0] * tokens.shape[1], dtype=np.int32)
            example_ids = example_ids.reshape(tokens.shape[:2])
        return example_ids

    def __call__(self, model: NucleotideTransformer, opt_state, tokens, key, example_ids=None):
        example_ids = self._arguments(tokens, example_ids)
        static = eqx.filter(model, is_dynamic, inverse=True)
        params, opt_state, metrics = self._jitted(model, opt_state, tokens, key, example_ids)
        return eqx.combine(params, static), opt_state, metrics

    def trace(self, model, opt_state, tokens, key, example_ids=None) -> jax.stages.Traced:
        if not isinstance(self._jitted, LowerableJit):
            raise TypeError("this step is compiled already")
        example_ids = self._arguments(tokens, example_ids)
        return self._jitted.trace(model, opt_state, tokens, key, example_ids)

    def compile(self, model, opt_state, tokens, key, example_ids=None, **options) -> TrainStep:
        """Compiled ahead of time (`options`: `lowering_platforms`, `compiler_options`)."""
        if not isinstance(self._jitted, LowerableJit):
            raise TypeError("this step is compiled already")
        example_ids = self._arguments(tokens, example_ids)
        return TrainStep(
            self._jitted.compile(model, opt_state, tokens, key, example_ids, **options)
        )
