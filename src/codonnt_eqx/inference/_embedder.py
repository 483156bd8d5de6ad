"""Embedding sequences of any length: layers, pooling, windows, reverse-complement averaging."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Float, Int

from ..kernels import SEGMENT_IMPLEMENTATIONS  # pyright: ignore[reportMissingImports]
from ..model import NucleotideTransformer, with_options
from ..tokenizers import SequenceError, Tokenizer, reverse_complement
from ._batching import Devices
from ._sequences import NamedSequence, name_and_sequence
from ._windowed import WindowedModel

Pooling = Literal["mean", "cls", "max", "none"]
DEFAULT_PACK_LENGTH = 512
POOLINGS: tuple[str, ...] = ("mean", "cls", "max", "none")


class InvalidRecordError(ValueError):
    """A record that cannot be tokenized; `name`, `position` (0-based or None) and `reason`."""

    def __init__(self, name: str, error: SequenceError):
        where = f", position {error.position + 1}" if error.position is not None else ""
        reason = str(error).split(": ", 1)[-1] if error.position is not None else str(error)
        super().__init__(f"record {name!r}{where}: {reason}")
        self.name, self.position, self.reason = name, error.position, reason


@dataclasses.dataclass(frozen=True)
class SequenceEmbedding:
    """The embedding of one sequence.

    - `name`: the FASTA name (`seq{i}` for plain strings, `i` counting from 0).
    - `length`: bases.
    - `num_tokens`: tokens of the sequence, specials excluded (what pooling averages over).
    - `vectors`: float32; pooled `[(layers,) embed]`, per token (`pooling="none"`)
      `[num_tokens, (layers,) embed]`; the layer axis is there when `layers` is a sequence.
    - `spans`: per token only, int `[num_tokens, 2]`: each token's `(start, end)` in the
      sequence (0-based, end exclusive).
    """

    name: str
    length: int
    num_tokens: int
    vectors: np.ndarray
    spans: np.ndarray | None = None


class Embedder:
    """Embeds sequences in length-bucketed batches, keeping its compiled shapes between calls.

    Sequences longer than `window` tokens are cut into windows overlapping by `overlap`
    tokens, each starting with `<cls>`; every token's output is taken from the window in
    which it is most central, so per-token outputs cover each token exactly once, and pooling
    runs over the whole stitched sequence (`cls` pooling averages the windows' `<cls>`
    vectors). A sequence that fits one window is embedded exactly as a direct model call.

    **Arguments:**

    - `model`, `tokenizer`: e.g. from `from_pretrained`.
    - `layers`: `None` (default) for the final embeddings (after the last LayerNorm); an int
      for one hidden state, a sequence of ints for several (0 is the input embedding, n the
      output of block n, `num_layers` = the final embeddings; negative counts from the end).
    - `pooling`: `"mean"` over the sequence's tokens, specials excluded (default), `"cls"`,
      `"max"` (element-wise over the tokens), or `"none"` (every token, with its span).
    - `attention`, `dtype`, `remat`: run options (`RunOptions`); None keeps the model's own
      (`with_options`). Outputs are float32 whatever the compute dtype.
    - `batch_tokens`: padded tokens per batch and device; `max_batch`: at most this many rows
      per batch and device.
    - `bucket`: batches are padded to a multiple of this many tokens.
    - `pack`: pack several windows into one row of `pack_length` tokens (segment ids keep
      them apart: the outputs are those of each alone, to float rounding), so short records
      cost no padding. `None` (default): on where the attention takes segments and a dense
      row is cheap: the CPU with an attention in `SEGMENT_IMPLEMENTATIONS` (on GPU and TPU
      the flash kernels, which do not take segments, are kept).
    - `pack_length`: tokens per packed row (default `DEFAULT_PACK_LENGTH`, at most `window`).
    - `window`, `overlap`: tokens per window (`<cls>` included; default `default_window`)
      and tokens shared by consecutive windows (default a quarter of the window).
    - `rc_average`: average the pooled embeddings of both strands (not with `"none"`: the
      two strands' tokens do not line up).
    - `chunk_tokens`: records are read and embedded in chunks of about this many tokens, so
      memory is bounded whatever the number of records; pooled, each window is reduced to
      its sum / maximum as its batch finishes, so a long record costs its token ids only.
    - `devices`: the batches' rows are split over these devices, the model replicated on each
      (data parallel): `None` (default) for every local device of the default backend, an
      int `n` for the first `n`, or a list of `jax.Device`s. The outputs do not depend on
      it beyond float rounding.

    ```python
    embedder = Embedder(model, tok, layers=[6, 12], pooling="mean")
    for e in embedder(read_fasta("genes.fa")):
        print(e.name, e.vectors.shape)  # [2, 512]
    ```
    """

    def __init__(
        self,
        model: NucleotideTransformer,
        tokenizer: Tokenizer,
        *,
        layers: int | Sequence[int] | None = None,
        pooling: Pooling = "mean",
        attention: str | None = None,
        dtype: Any = None,
        remat: bool | None = None,
        batch_tokens: int = 8192,
        max_batch: int | None = None,
        bucket: int = 128,
        pack: bool | None = None,
        pack_length: int = DEFAULT_PACK_LENGTH,
        window: int | None = None,
        overlap: int | None = None,
        rc_average: bool = False,
        chunk_tokens: int = 1 << 16,
        devices: Devices = None,
    ):
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if rc_average and pooling == "none":
            raise ValueError(
                "rc_average needs a pooling: per-token outputs of the two strands do not line up"
            )
        model = with_options(model, attention=attention, dtype=dtype, remat=remat)
        self.layers = _layer_indices(layers, model.config.num_layers)
        takes_segments = model.options.attention in SEGMENT_IMPLEMENTATIONS
        if pack and not takes_segments:
            raise ValueError(
                f"pack=True needs an attention that takes segment ids {SEGMENT_IMPLEMENTATIONS}, "
                f"got {model.options.attention!r}"
            )
        if pack is None:
            pack = takes_segments and jax.default_backend() == "cpu"
        if isinstance(pack_length, bool) or not isinstance(pack_length, int) or pack_length < 1:
            raise ValueError(f"pack_length must be a positive int, got {pack_length!r}")
        self.pack = bool(pack)
        self.core = WindowedModel(
            model,
            tokenizer,
            _forward_fn(self.layers, self.pack),
            window=window,
            overlap=overlap,
            batch_tokens=batch_tokens,
            max_batch=max_batch,
            bucket=bucket,
            devices=devices,
            pack_length=pack_length if self.pack else None,
        )
        if pooling == "cls" and not self.core.has_cls:
            raise ValueError("pooling='cls' needs a tokenizer that prepends <cls>")
        self.model, self.tokenizer = model, tokenizer
        self.window, self.overlap, self.runner = (
            self.core.window,
            self.core.overlap,
            self.core.runner,
        )
        self._squeeze_layers = layers is None or isinstance(layers, int | np.integer)
        self.pooling, self.rc_average = pooling, rc_average
        self.chunk_tokens = chunk_tokens
        self.tokens_done = 0

    def __call__(
        self,
        sequences: Iterable[str | NamedSequence],
        *,
        on_invalid: Callable[[InvalidRecordError], None] | None = None,
    ) -> Iterator[SequenceEmbedding]:
        """Embeddings of `sequences` (strings, or records with a name and a sequence such as
        `FastaRecord`), yielded in order, chunk by chunk. A record the tokenizer rejects raises
        `InvalidRecordError` (naming it and the position), or, when `on_invalid` is given, is
        passed to it and skipped."""
        numbered = enumerate(sequences)
        while chunk := self._next_chunk(numbered, on_invalid):
            yield from self._embed_chunk(chunk)

    def _next_chunk(self, numbered, on_invalid) -> list[tuple[str, int, list]]:
        """(name, bases, [(ids, spans) per strand]) of the next records, about
        `chunk_tokens` tokens in all."""
        chunk, tokens = [], 0
        for i, item in numbered:
            name, seq = name_and_sequence(item, i)
            try:
                strands = [self._encode(seq)]
                if self.rc_average:
                    strands.append(self._encode(reverse_complement(seq)))
            except SequenceError as e:
                error = InvalidRecordError(name, e)
                if on_invalid is None:
                    raise error from e
                on_invalid(error)
                continue
            chunk.append((name, len(seq), strands))
            tokens += sum(len(ids) for ids, _ in strands)
            if tokens >= self.chunk_tokens:
                break
        return chunk

    def _encode(self, seq: str):
        return self.core.encode(seq)

    def _embed_chunk(self, chunk) -> Iterator[SequenceEmbedding]:
        core, h = self.core, self.core.offset
        rows, kept, strand_rows = [], [], []
        for _, _, strands in chunk:
            for body, _ in strands:
                first = len(rows)
                for s, lo, hi in core.windows(len(body)):
                    rows.append(core.row(body, s))
                    kept.append((h + lo - s, h + hi - s, ~core.is_special(body[lo:hi])))
                strand_rows.append(range(first, len(rows)))
        # Each window is reduced to what its kept tokens contribute as soon as its batch is
        # done, so a pooled embedding of a long record never holds all its token outputs.
        outputs = core.run(rows, self._reduce(kept))
        pieces = iter(strand_rows)
        for name, length, strands in chunk:
            pooled, tokens = [], None
            for body, spans in strands:
                parts = [outputs[i] for i in next(pieces)]
                pooled.append(self._combine(parts))
                if self.pooling == "none":
                    tokens = (pooled[-1], spans[~core.is_special(body)])
            self.tokens_done += sum(len(body) + h for body, _ in strands)
            if self.pooling == "none":
                assert tokens is not None  # set for every strand above
                vectors, token_spans = tokens
                vectors = vectors[:, 0] if self._squeeze_layers else vectors
            else:
                vectors, token_spans = np.mean(pooled, axis=0), None
                vectors = vectors[0] if self._squeeze_layers else vectors
            num_tokens = int(np.count_nonzero(~core.is_special(strands[0][0])))
            yield SequenceEmbedding(name, length, num_tokens, vectors, token_spans)

    def _reduce(self, kept):
        """Per window: its kept tokens [tokens, layers, embed] (pooling none), or their sum
        and count (mean), maximum (max), or its <cls> vector (cls)."""
        pooling = self.pooling

        def reduce(i, out):
            lo, hi, keep = kept[i]
            tokens = out[lo:hi][keep]
            if pooling == "none":
                return tokens.copy()
            if pooling == "mean":
                return tokens.sum(axis=0), len(tokens)
            if pooling == "max":
                return tokens.max(axis=0) if len(tokens) else None
            return out[0].copy()

        return reduce

    def _combine(self, parts):
        """One strand's output from its windows' reductions."""
        if self.pooling == "none":
            return np.concatenate(parts)
        if self.pooling == "mean":
            return sum(p[0] for p in parts) / max(1, sum(p[1] for p in parts))
        if self.pooling == "max":
            return np.max([p for p in parts if p is not None], axis=0)
        return np.mean(parts, axis=0)


def embed(
    model: NucleotideTransformer,
    tokenizer: Tokenizer,
    sequences: Iterable[str | NamedSequence],
    **options,
) -> Float[np.ndarray, "sequences *layers embed"] | list[np.ndarray]:
    """Embeddings of `sequences` in one call (options: those of `Embedder`).

    **Returns:** pooled, a float32 array `[sequences, (layers,) embed]`; with
    `pooling="none"`, a list of `[tokens, (layers,) embed]` arrays (use `Embedder` for
    the token spans too).

    ```python
    model, tok = from_pretrained("codon-nt")
    vectors = embed(model, tok, read_fasta("genes.fa"))  # [genes, 512], mean-pooled
    ```
    """
    results = [e.vectors for e in Embedder(model, tokenizer, **options)(sequences)]
    if options.get("pooling", "mean") == "none":
        return results
    return np.stack(results)


def _layer_indices(layers, num_layers: int) -> tuple[int, ...] | None:
    if layers is None:
        return None
    chosen = [layers] if isinstance(layers, int | np.integer) else list(layers)
    if not chosen:
        raise ValueError("layers must name at least one hidden state")
    out = []
    for layer in chosen:
        if not isinstance(layer, int | np.integer) or isinstance(layer, bool):
            raise ValueError(f"layers must be ints, got {layer!r}")
        if not -(num_layers + 1) <= layer <= num_layers:
            raise ValueError(
                f"layer {layer} is outside 0..{num_layers} (0: input embedding, "
                f"{num_layers}: final embeddings)"
            )
        out.append(int(layer) % (num_layers + 1))
    return tuple(out)


def _forward_fn(layers, packed: bool):
    """(model, tokens [rows, length](, segment ids [rows, length])) -> float32
    [rows, length, layers, embed]."""

    def one(model, tokens: Int[jax.Array, " length"], segments):
        if layers is None:
            return model(tokens, segment_ids=segments).embeddings[:, None]
        out = model(tokens, segment_ids=segments, hidden_states=True)
        return jnp.stack([out.hidden_states[i] for i in layers], axis=1)

    if packed:
        return lambda model, tokens, segments: jax.vmap(lambda t, s: one(model, t, s))(
            tokens, segments
        )
    return lambda model, tokens: jax.vmap(lambda t: one(model, t, None))(tokens)
