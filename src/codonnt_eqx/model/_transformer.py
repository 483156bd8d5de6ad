"""The Nucleotide Transformer (Codon-NT and the NT v1/v2 family) as one Equinox module."""

from __future__ import annotations

import operator
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jax.core import Tracer
from jaxtyping import Array, Float, Int, PRNGKeyArray

from ._config import ModelConfig
from ._layers import Block, LayerNorm, LMHead, RotaryEmbedding, truncated_normal
from ._options import RunOptions, with_legacy_options


class ModelOutput(eqx.Module):
    """What one forward pass returns (float32).

    - `logits` [length, vocab]: 0 at padding positions, as in the original.
    - `embeddings` [length, embed]: after the final LayerNorm.
    - `hidden_states`: if requested, a tuple of num_layers + 1 arrays [length, embed]; entry 0
      is the input embedding, entry n the output of block n (the last one after the final
      LayerNorm, i.e. equal to `embeddings`): the original's `embeddings_n`.
    - `attention_maps`: if requested, {(layer, head): [length, length]} softmax weights.
    """

    logits: Float[Array, "length vocab"]
    embeddings: Float[Array, "length embed"]
    hidden_states: tuple[Float[Array, "length embed"], ...] | None = None
    attention_maps: dict[tuple[int, int], Float[Array, "length length"]] | None = None


class NucleotideTransformer(eqx.Module):
    """A Nucleotide Transformer encoder with its masked-language-model head.

    One call processes one right-padded token sequence; batch with `jax.vmap`.

    **Arguments (constructor):**

    - `config`: a `ModelConfig`, e.g. `preset("codon_nt")`.
    - `key`: PRNG key for the initialisation (truncated-normal fan-in projections, unit
      LayerNorms, zero biases, as the original).

    How it runs (attention implementation, compute dtype, remat) is its `options`, a
    `RunOptions` set with `with_options(model, attention=..., dtype=..., remat=...)`.

    ```python
    model = NucleotideTransformer(preset("codon_nt"), key=jax.random.key(0))
    tokens = KmerTokenizer(3).batch_encode(["ATGGCCAAGTAA", "ATGTGA"])
    out = jax.vmap(model)(tokens)          # out.logits [2, 5, 75], out.embeddings [2, 5, 512]
    ```
    """

    config: ModelConfig = eqx.field(static=True)
    embed: Float[Array, "vocab embed"]
    position_embed: Float[Array, "positions embed"] | None
    emb_layer_norm_before: LayerNorm | None
    blocks: Block  # parameters stacked along a leading layer axis
    final_norm: LayerNorm
    lm_head: LMHead
    rotary: RotaryEmbedding | None
    options: RunOptions = eqx.field(static=True)

    def __init__(self, config: ModelConfig, *, key: PRNGKeyArray):
        k_embed, k_pos, k_blocks, k_head = jr.split(key, 4)
        d = config.embed_dim
        self.config = config
        self.embed = truncated_normal(k_embed, (config.vocab_size, d), 1.0)
        if config.positional_embedding == "learned":
            rows = config.max_positions + config.pad_token_id + 1
            self.position_embed = truncated_normal(k_pos, (rows, d), 1.0)
            self.rotary = None
        else:
            self.position_embed = None
            self.rotary = RotaryEmbedding(config.head_dim, config.rotary_rescaling)
        self.emb_layer_norm_before = (
            LayerNorm(d, config.layer_norm_eps) if config.emb_layer_norm_before else None
        )
        keys = jr.split(k_blocks, config.num_layers)
        self.blocks = eqx.filter_vmap(lambda k: Block(config, key=k))(keys)
        self.final_norm = LayerNorm(d, config.layer_norm_eps)
        self.lm_head = LMHead(config, key=k_head)
        self.options = RunOptions()

    def num_parameters(self) -> int:
        return sum(x.size for x in jax.tree.leaves(eqx.filter(self, eqx.is_array)))

    def _input_embedding(self, tokens, is_pad, packing):
        """`packing`: None, or (run index, position in its sequence) per token."""
        c = self.config
        x = self.embed[tokens] * c.embed_scale
        if c.token_dropout:
            # ESM token dropout, applied at inference too: <mask> rows are zeroed and the rest
            # rescaled from the training mask rate to the observed one.
            is_mask = tokens == c.mask_token_id
            x = jnp.where(is_mask[:, None], 0.0, x)
            train_rate = c.masking_ratio * c.masking_prob
            if packing is None:
                observed = jnp.sum(is_mask) / jnp.maximum(jnp.sum(~is_pad), 1)
            else:  # each packed sequence's own mask rate
                runs, n = packing[0], tokens.shape[0]
                masks = jax.ops.segment_sum(is_mask.astype(jnp.float32), runs, n)
                real = jax.ops.segment_sum((~is_pad).astype(jnp.float32), runs, n)
                observed = (masks / jnp.maximum(real, 1.0))[runs][:, None]
            # An all-<mask> input has every row zeroed already; keep 0 / 0 from making NaN.
            x = x * (1.0 - train_rate) / jnp.where(observed < 1.0, 1.0 - observed, 1.0)
        if self.position_embed is not None:
            # ESM position ids: 1, 2, ... after the pad index; pads keep the pad index.
            counted = jnp.cumsum(~is_pad) if packing is None else packing[1] + 1
            positions = counted * ~is_pad + c.pad_token_id
            x = x + self.position_embed[positions]
        if self.emb_layer_norm_before is not None:
            x = self.emb_layer_norm_before(x)
        return x

    def __call__(
        self,
        tokens: Int[Array, " length"],
        *,
        segment_ids: Int[Array | np.ndarray, " length"] | None = None,
        hidden_states: bool = False,
        attention_maps: Sequence[tuple[int, int]] = (),
        attention: str | None = None,
        dtype=None,
        remat: bool | None = None,
    ) -> ModelOutput:
        """Run the model on one token sequence.

        **Arguments:**

        - `tokens`: int [length], right-padded with the pad token (as `batch_encode` makes).
        - `segment_ids`: int [length], non-decreasing (`0, 0, 0, 1, 1, 2, ...`), or None: several
          sequences packed into one row, each a run of equal ids. Each is computed as if it
          were alone: attention stays within it, positions (rotary or learned) restart at 0,
          token dropout uses its own mask rate. The pads at the end may carry any id not below
          the last sequence's. Needs an attention implementation that takes segments
          (`"auto"`, `"blocked"`, `"xla"`, `"reference"`).
        - `hidden_states`: also return every block's output.
        - `attention_maps`: (layer, head) pairs whose weights to return; computed after the
          forward pass (which the attention option alone decides) from each asked layer's
          input, at O(heads x length^2) memory per layer asked.
        - `attention`, `dtype`, `remat`: deprecated here (a `DeprecationWarning`; removed in
          the next release): the run options belong on the model,
          `with_options(model, attention=..., dtype=..., remat=...)`; see `RunOptions`.

        Positions after the first pad must all be pads. Called eagerly, a pad in the middle,
        ids outside the vocabulary (JAX gathers would silently clamp them) and more non-pad
        tokens than `max_positions` in a learned-position model raise `ValueError`. Under `jit`
        / `vmap` the values are not known, and a check would be a host callback in every step
        (a device-to-host round trip on an accelerator, and no ahead-of-time compile without
        one): there such a sequence gets NaN outputs instead, never a silent wrong answer.
        The package's own entry points (embedding, scoring, training) check their token
        batches on the host before the compiled call. A batched (2-D) input always raises.
        """
        if attention is not None or dtype is not None or remat is not None:
            model = with_legacy_options(
                self, "the model call", attention=attention, dtype=dtype, remat=remat
            )
            return model(
                tokens,
                segment_ids=segment_ids,
                hidden_states=hidden_states,
                attention_maps=attention_maps,
            )
        c = self.config
        tokens = _checked_tokens(tokens, c)
        _check_attention_maps(c, attention_maps)
        dtype = self.options.compute_dtype
        length = tokens.shape[0]
        is_pad = tokens == c.pad_token_id
        num_valid = jnp.sum(~is_pad).astype(jnp.int32)
        invalid = _invalid_tokens(tokens, is_pad, num_valid, c)
        segments, packing = _checked_segments(segment_ids, length), None
        if segments is not None:
            packing = _runs_and_positions(segments)
            if isinstance(segments, Tracer):
                bad = jnp.any(segments[1:] < segments[:-1])
                invalid = bad if invalid is None else invalid | bad
        x = self._input_embedding(tokens, is_pad, packing)
        rotary = None
        if self.rotary is not None:
            at = None if packing is None else packing[1]
            rotary = tuple(t.astype(dtype) for t in self.rotary.tables(length, at))
        params, static = eqx.partition(self.blocks, eqx.is_array)
        keep = hidden_states or bool(attention_maps)

        def step(x, block_params):
            block = eqx.combine(block_params, static)
            x = block(x, num_valid, rotary, segments)
            return x, (x if keep else None)

        if self.options.remat:
            step = jax.checkpoint(step)
        x0 = x
        x, outputs = jax.lax.scan(step, x, params)
        embeddings = self.final_norm(x).astype(jnp.float32)
        logits = self.lm_head(embeddings).astype(jnp.float32)
        logits = jnp.where(is_pad[:, None], 0.0, logits)

        states = None
        kept: jax.Array = x0 if outputs is None else outputs  # the scan kept each block's output
        if hidden_states:
            states = (
                x0.astype(jnp.float32),
                *(kept[i].astype(jnp.float32) for i in range(c.num_layers - 1)),
                embeddings,
            )
        maps = None
        if attention_maps:
            # Recomputed from each layer's input after the fast pass, so asking for a map
            # never changes how the outputs are computed, and costs O(length^2) per layer asked.
            maps = {}
            for layer in sorted({layer for layer, _ in attention_maps}):
                block = eqx.combine(jax.tree.map(operator.itemgetter(layer), params), static)
                x_in = x0 if layer == 0 else kept[layer - 1]
                weights = block.attention_weights(x_in, num_valid, rotary, segments)
                for head in sorted({h for ly, h in attention_maps if ly == layer}):
                    maps[(layer, head)] = weights[head]
        out = ModelOutput(logits, embeddings, states, maps)
        if invalid is None:
            return out
        return jax.tree.map(lambda y: jnp.where(invalid, jnp.nan, y), out)


_ONE_SEQUENCE = "one sequence per call; batch with jax.vmap(model)"


def _checked_tokens(tokens, c: ModelConfig) -> Int[Array, " length"]:
    """`tokens` as an int array of shape [length]; for concrete input its ids, padding and
    length are checked against the config too (`ValueError` naming the first offender)."""
    if not isinstance(tokens, jax.Array):
        tokens = jnp.asarray(tokens)
    if tokens.ndim != 1:
        raise ValueError(f"tokens must have shape [length], got {tokens.shape}: {_ONE_SEQUENCE}")
    if not jnp.issubdtype(tokens.dtype, jnp.integer):
        raise TypeError(f"tokens must be integer ids, got dtype {tokens.dtype}")
    if not isinstance(tokens, Tracer):
        check_token_ids(np.asarray(tokens)[None], c)
    return tokens


def _checked_segments(segment_ids, length: int) -> jax.Array | None:
    """`segment_ids` as an int array [length] (None stays None); concrete ones must be
    non-decreasing (`ValueError`), traced ones are checked on the device (NaN outputs)."""
    if segment_ids is None:
        return None
    ids = segment_ids if isinstance(segment_ids, jax.Array) else jnp.asarray(segment_ids)
    if ids.shape != (length,):
        raise ValueError(f"segment_ids must have shape [length] = ({length},), got {ids.shape}")
    if not jnp.issubdtype(ids.dtype, jnp.integer):
        raise TypeError(f"segment_ids must be integers, got dtype {ids.dtype}")
    if not isinstance(ids, Tracer):
        drops = np.flatnonzero(np.diff(np.asarray(ids)) < 0)
        if drops.size:
            raise ValueError(
                "segment_ids must be non-decreasing (each packed sequence one run of equal "
                f"ids); position {int(drops[0]) + 1} goes back"
            )
    return ids.astype(jnp.int32)


def _runs_and_positions(segments: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per token: the index of its run of equal ids (0, 1, ...) and its position in the run."""
    index = jnp.arange(segments.shape[0])
    starts = jnp.concatenate([jnp.ones((1,), bool), segments[1:] != segments[:-1]])
    runs = jnp.cumsum(starts) - 1
    first = jax.lax.cummax(jnp.where(starts, index, 0))
    return runs, index - first


def check_token_ids(tokens: np.ndarray, config: ModelConfig) -> None:
    """Raise `ValueError` naming the first offender if a batch of token ids [batch, length]
    (concrete, on the host) is not valid input for a model of `config`: ids outside the
    vocabulary, a pad before a real token, or more real tokens than a learned-position model
    has positions. The entry points call this before their compiled call, where the model
    itself can no longer check (see `NucleotideTransformer.__call__`)."""
    c = config
    ids = np.asarray(tokens)
    bad = np.argwhere((ids < 0) | (ids >= c.vocab_size))
    if bad.size:
        where = tuple(int(i) for i in bad[0])
        at = f"position {where[-1]}" + (f" of sequence {where[0]}" if len(ids) > 1 else "")
        raise ValueError(
            f"token ids must be in [0, {c.vocab_size}) for this model's vocabulary; got "
            f"{int(ids[where])} at {at} (a tokenizer of another vocabulary?)"
        )
    is_pad = ids == c.pad_token_id
    misplaced = np.flatnonzero(np.any(is_pad[:, :-1] & ~is_pad[:, 1:], axis=-1))
    if misplaced.size:
        row = int(misplaced[0])
        raise ValueError(
            "pad tokens must all come after the sequence (right padding)"
            + (f"; sequence {row} has a pad before a real token" if len(ids) > 1 else "")
        )
    if c.positional_embedding == "learned":
        counts = np.count_nonzero(~is_pad, axis=-1)
        if counts.size and counts.max() > c.max_positions:
            raise ValueError(
                f"more than max_positions = {c.max_positions} non-pad tokens (learned "
                f"positions): got {int(counts.max())}"
            )


def _invalid_tokens(tokens, is_pad, num_valid, c: ModelConfig) -> jax.Array | None:
    """bool []: traced `tokens` that `check_token_ids` would refuse (None for concrete ones,
    checked already). Computed on the device, with no host callback."""
    if not isinstance(tokens, Tracer):
        return None
    invalid = jnp.any((tokens < 0) | (tokens >= c.vocab_size))
    invalid |= jnp.any(is_pad != (jnp.arange(tokens.shape[0]) >= num_valid))
    if c.positional_embedding == "learned":
        invalid |= num_valid > c.max_positions
    return invalid


def _check_attention_maps(c: ModelConfig, attention_maps) -> None:
    for pair in attention_maps:
        if not (isinstance(pair, tuple) and len(pair) == 2 and all(_is_int(i) for i in pair)):
            raise ValueError(f"attention_maps must hold (layer, head) int pairs, got {pair!r}")
        layer, head = pair
        if not (0 <= layer < c.num_layers and 0 <= head < c.num_heads):
            raise ValueError(
                f"attention map ({layer}, {head}) is outside "
                f"{c.num_layers} layers x {c.num_heads} heads"
            )


def _is_int(value) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)
