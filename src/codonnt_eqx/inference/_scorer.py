"""Likelihood scores from the masked-language-model head: pseudo-log-likelihoods,
per-token log-probabilities and zero-shot variant effects."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import jax
import numpy as np

from ..model import NucleotideTransformer, with_options
from ..tokenizers import CODON_TABLE, SequenceError, Tokenizer
from ._batching import Devices
from ._consequence import consequence, looks_coding
from ._sequences import NamedSequence, name_and_sequence
from ._windowed import WindowedModel

VariantMethod = Literal["masked_marginal", "wildtype_marginal"]
VARIANT_METHODS: tuple[str, ...] = ("masked_marginal", "wildtype_marginal")
_ROWS_PER_CALL = 2048  # masked copies made at a time: bounds memory on long sequences


@dataclasses.dataclass(frozen=True)
class TokenLogLikelihood:
    """Log-probabilities (natural log) of a sequence's own tokens, specials excluded.

    - `log_probs`: float64 `[tokens]`; `spans`: int `[tokens, 2]`, each token's `(start, end)`
      in the sequence.
    - `total`: their sum, the (pseudo-)log-likelihood.
    - `method`: `"masked"` (each token masked in turn: the pseudo-log-likelihood) or
      `"one_pass_unmasked"` (one forward pass, nothing masked: a fast approximation that
      sees each token it scores, so it is higher than the masked score).
    """

    log_probs: np.ndarray
    spans: np.ndarray
    total: float
    method: str


@dataclasses.dataclass(frozen=True)
class Variant:
    """A change to a named sequence: `sequence[position - 1 : position - 1 + len(ref)]`
    (1-based `position`) becomes `alt`; `"-"` or `""` is an empty allele (an insertion
    goes before `position`)."""

    sequence_name: str
    position: int
    ref: str
    alt: str


@dataclasses.dataclass(frozen=True)
class VariantScore:
    """The zero-shot score of one variant.

    - `score`: `alt_log_prob - ref_log_prob` (nats); negative means the model finds the
      alternative allele less likely. None when the variant could not be scored (`error`).
    - `ref_log_prob`, `alt_log_prob`: summed log-probabilities of the reference and the
      alternative tokens at the masked positions.
    - `masked_tokens`: how many tokens were masked (the tokens the variant changes).
    - `method`: `"masked_marginal"` (same token count on both sides: one pass, the changed
      tokens masked, both alleles read from the same output), `"wildtype_marginal"` (nothing
      masked: both alleles read from the unmasked reference) or `"two_contexts"` (an indel
      that changes the token count: each allele's changed tokens masked in its own sequence,
      one token of context either side included when a side would be empty).
    - `consequence`: for an in-frame coding sequence, `synonymous`, `missense`, `nonsense`,
      `stop_lost`, `inframe_indel`, `frameshift` or `unknown`; `""` otherwise.
    - `error`: why the variant was not scored (reference mismatch, unknown sequence, ...).
    - `aa_score`: for a variant that changes one codon of an in-frame coding sequence, where
      that codon is one token (3-mer and codon tokenizers): log P(alt amino acid) - log
      P(ref amino acid) at the masked codon, each the log-sum-exp of the probabilities of the
      codons that encode it (the stop `*` is an amino acid here), from the same masked pass
      as `score`: 0 for a synonymous change by construction. None otherwise.
    """

    variant: Variant
    score: float | None
    ref_log_prob: float | None
    alt_log_prob: float | None
    masked_tokens: int
    method: str
    consequence: str
    error: str | None = None
    aa_score: float | None = None


class Scorer:
    """Scores sequences and variants with a model's MLM head, in length-bucketed batches
    (compiled shapes are kept between calls). Sequences longer than `window` tokens are
    scored in overlapping windows, each token in the window where it is most central (as
    `Embedder` does); a variant is scored in one window centred on it.

    **Arguments:**

    - `model`, `tokenizer`: e.g. from `from_pretrained`.
    - `attention`, `dtype`, `remat`, `batch_tokens`, `max_batch`, `bucket`, `window`,
      `overlap`, `devices`: as for `Embedder` (by default batches are split over every local
      device).
    - `max_variant_tokens`: variants that change more tokens than this are not scored
      (e.g. a frameshift, which changes every codon token downstream).
    """

    def __init__(
        self,
        model: NucleotideTransformer,
        tokenizer: Tokenizer,
        *,
        attention: str | None = None,
        dtype: Any = None,
        remat: bool | None = None,
        batch_tokens: int = 8192,
        max_batch: int | None = None,
        bucket: int = 128,
        window: int | None = None,
        overlap: int | None = None,
        max_variant_tokens: int = 16,
        devices: Devices = None,
    ):
        if isinstance(max_variant_tokens, bool) or not isinstance(max_variant_tokens, int):
            raise ValueError(f"max_variant_tokens must be an integer, got {max_variant_tokens!r}")
        if max_variant_tokens < 1:
            raise ValueError(f"max_variant_tokens must be >= 1, got {max_variant_tokens}")
        model = with_options(model, attention=attention, dtype=dtype, remat=remat)
        self.core = WindowedModel(
            model,
            tokenizer,
            _log_probs,
            window=window,
            overlap=overlap,
            batch_tokens=batch_tokens,
            max_batch=max_batch,
            bucket=bucket,
            devices=devices,
        )
        self.model, self.tokenizer = model, tokenizer
        self.window, self.overlap, self.runner = (
            self.core.window,
            self.core.overlap,
            self.core.runner,
        )
        self._size = self.core.size
        self.max_variant_tokens = max_variant_tokens
        self._codons = self._codon_ids()

    # -- sequences ------------------------------------------------------------------------------

    def _body(self, sequence: str):
        return self.core.encode(sequence)

    def pseudo_log_likelihood(self, sequence: str) -> TokenLogLikelihood:
        """Each token masked in turn, scored by the model's log-probability of it."""
        core = self.core
        body, spans = core.encode(sequence)
        h = core.offset
        jobs = []  # (window start, position in the body)
        for s, lo, hi in core.windows(len(body)):
            jobs += [(s, p) for p in range(lo, hi)]
        scores = np.empty(len(body))
        mask_id = self.tokenizer.mask_id
        for begin in range(0, len(jobs), _ROWS_PER_CALL):
            part = jobs[begin : begin + _ROWS_PER_CALL]
            rows = []
            for s, p in part:
                row = core.row(body, s)
                row[h + p - s] = mask_id
                rows.append(row)

            def pick(i, out, part=part):
                s, p = part[i]
                return out[h + p - s, body[p]]

            scores[[p for _, p in part]] = core.run(rows, pick)
        return self._result(body, spans, scores, "masked")

    def one_pass_log_likelihood(self, sequence: str) -> TokenLogLikelihood:
        """One forward pass per window, nothing masked (the fast approximation)."""
        core = self.core
        body, spans = core.encode(sequence)
        h = core.offset
        windows = core.windows(len(body))

        def pick(i, out):
            s, lo, hi = windows[i]
            return out[h + np.arange(lo - s, hi - s), body[lo:hi]]

        rows = [core.row(body, s) for s, _, _ in windows]
        scores = np.concatenate(core.run(rows, pick)).astype(np.float64)
        return self._result(body, spans, scores, "one_pass_unmasked")

    def _result(self, body, spans, scores, method) -> TokenLogLikelihood:
        keep = ~self.core.is_special(body)
        log_probs = np.asarray(scores, np.float64)[keep]
        return TokenLogLikelihood(log_probs, spans[keep], float(log_probs.sum()), method)

    # -- variants -------------------------------------------------------------------------------

    def score_variants(
        self,
        references: Mapping[str, str] | Iterable[NamedSequence],
        variants: Iterable[Variant],
        *,
        coding: bool | None = None,
        method: VariantMethod = "masked_marginal",
    ) -> list[VariantScore]:
        """Zero-shot scores of `variants` against `references` (name -> sequence, or FASTA
        records). `coding`: whether the references are in-frame coding sequences (for
        `consequence`); None decides per sequence with `looks_coding`. Variants that cannot
        be scored come back with `error` set, never raise; two references of one name are
        a `ValueError` (which one a variant meant would be a guess).

        `method` (for variants that keep the token count; indels are scored in two contexts):
        `"masked_marginal"` (the default, the most faithful): the changed tokens masked, both
        alleles read from that pass; variants that mask the same tokens (every substitution
        of one codon) share it. `"wildtype_marginal"`: nothing masked, both alleles read
        from the unmasked reference, so one pass per window scores every substitution in it
        (fast; the model sees the reference allele it is asked about)."""
        if method not in VARIANT_METHODS:
            raise ValueError(f"method must be one of {VARIANT_METHODS}, got {method!r}")
        if not isinstance(references, Mapping):
            named: dict[str, str] = {}
            for i, r in enumerate(references):
                name, sequence = name_and_sequence(r, i)
                if name in named:  # variants name their sequence: either would be a guess
                    raise ValueError(f"two reference sequences are named {name!r}")
                named[name] = sequence
            references = named
        tokenized: dict[str, tuple] = {}
        plans, rows, seen = [], [], {}
        for variant in variants:
            plan = self._plan_variant(references, tokenized, variant, coding, method)
            for row, keep, read in plan.masked_rows:  # one pass per distinct row
                key = (row.tobytes(), keep.tobytes())
                if key not in seen:
                    seen[key] = len(rows)
                    rows.append((row, keep))
                plan.reads.append((seen[key], read))
            plans.append(plan)
        outputs = []
        for begin in range(0, len(rows), _ROWS_PER_CALL):
            part = rows[begin : begin + _ROWS_PER_CALL]
            outputs += self.core.run([r for r, _ in part], _masked_log_probs(part))
        return [plan.result(outputs) for plan in plans]

    def _plan_variant(
        self, references, tokenized, variant: Variant, coding, method: str
    ) -> _VariantPlan:
        v = variant
        ref, alt = ("" if a == "-" else a for a in (v.ref, v.alt))
        plan = _VariantPlan(v)
        seq = references.get(v.sequence_name)
        if seq is None:
            return plan.fail(f"no sequence named {v.sequence_name!r} in the reference")
        start = v.position - 1
        if not 0 <= start <= len(seq) - len(ref):
            return plan.fail(f"position {v.position} is outside {v.sequence_name} ({len(seq)} bp)")
        actual = seq[start : start + len(ref)]
        if actual.upper() != ref.upper():
            end = v.position + len(ref) - 1
            return plan.fail(
                f"ref mismatch: {v.sequence_name} has {actual!r} at {v.position}..{end}, "
                f"the variant says {v.ref!r}"
            )
        if ref.upper() == alt.upper():
            return plan.fail("ref and alt are the same allele")
        if (coding is None and looks_coding(seq)) or coding:
            plan.consequence = consequence(seq.upper(), start, ref.upper(), alt.upper())
        if v.sequence_name not in tokenized:
            tokenized[v.sequence_name] = self._body(seq)
        ref_body, ref_spans = tokenized[v.sequence_name]
        mutated = seq[:start] + alt + seq[start + len(ref) :]
        try:
            alt_body = self._body(mutated)[0]
        except SequenceError as e:
            return plan.fail(f"alt cannot be tokenized: {e}")
        # The changed tokens: what is left after the common prefix and suffix.
        n = min(len(ref_body), len(alt_body))
        same = ref_body[:n] == alt_body[:n]
        a = int(np.argmin(same)) if not same.all() else n
        same = ref_body[::-1][: n - a] == alt_body[::-1][: n - a]
        b = int(np.argmin(same)) if not same.all() else n - a
        ref_span, alt_span = (a, len(ref_body) - b), (a, len(alt_body) - b)
        two_contexts = ref_span[1] - ref_span[0] != alt_span[1] - alt_span[0]
        if two_contexts and min(ref_span[1] - ref_span[0], alt_span[1] - alt_span[0]) == 0:
            ref_span = (max(0, a - 1), min(len(ref_body), ref_span[1] + 1))
            alt_span = (max(0, a - 1), min(len(alt_body), alt_span[1] + 1))
        width = max(ref_span[1] - ref_span[0], alt_span[1] - alt_span[0])
        if width > min(self.max_variant_tokens, self._size):
            return plan.fail(
                f"changes {width} tokens, more than {min(self.max_variant_tokens, self._size)} "
                "(a frameshift under this tokenization?)"
            )
        plan.masked = 0 if method == "wildtype_marginal" and not two_contexts else width
        plan.method = "two_contexts" if two_contexts else method
        if two_contexts:
            plan.masked_rows.append(self._masked_row(ref_body, ref_span, None, None))
            plan.masked_rows.append(self._masked_row(alt_body, alt_span, None, None))
        else:
            codon = ref_spans[a] if width == 1 and plan.consequence in _ONE_CODON else None
            amino_acids = None if codon is None else self._amino_acid_ids(seq, mutated, codon)
            if method == "wildtype_marginal":
                row = self._unmasked_row(ref_body, ref_span, alt_body, alt_span, amino_acids)
            else:
                row = self._masked_row(ref_body, ref_span, alt_body, alt_span, amino_acids)
            plan.masked_rows.append(row)
        return plan

    def _amino_acid_ids(self, seq: str, mutated: str, span) -> tuple | None:
        """(ids of the codons of the reference amino acid, of the alternative one) when the
        masked token is exactly the codon of the frame at `span`, else None."""
        lo, hi = (int(v) for v in span)
        ids = self._codons
        if ids is None or hi - lo != 3 or lo % 3:
            return None
        ref_aa = CODON_TABLE.get(seq[lo:hi].upper())
        alt_aa = CODON_TABLE.get(mutated[lo:hi].upper())
        if ref_aa is None or alt_aa is None:
            return None
        pick = lambda aa: np.array([ids[c] for c, a in CODON_TABLE.items() if a == aa])  # noqa: E731
        return pick(ref_aa), pick(alt_aa)

    def _codon_ids(self) -> dict[str, int] | None:
        """Codon -> its token id, where the tokenizer makes each codon one token; else None."""
        ids = {}
        for codon in CODON_TABLE:
            try:
                body, spans = self._body(codon)
            except SequenceError:
                return None
            if len(body) != 1 or tuple(int(v) for v in spans[0]) != (0, 3):
                return None
            ids[codon] = int(body[0])
        return ids

    def _unmasked_row(self, body, span, other_body, other_span, amino_acids):
        """The window of the fixed tiling that keeps `span`'s first token (so that variants
        of one window share its row), unmasked; its whole output is kept. Falls back to a
        window centred on the span when the span runs past that window."""
        lo, hi = span
        start = next(s for s, keep_lo, keep_hi in self.core.windows(len(body)) if lo < keep_hi)
        if hi > start + self.core.size:
            start = self.core.centred_start(lo, hi, len(body))
        row = self.core.row(body, start)
        where = np.arange(lo, hi) - start + self.core.offset
        other = other_body[other_span[0] : other_span[1]]
        return row, np.arange(len(row)), (where, body[lo:hi], other, amino_acids)

    def _masked_row(self, body, span, other_body, other_span, amino_acids=None):
        """A window centred on `span` with it masked; the positions of the row to keep; what
        to read from them: (indices into the kept ones, ids of body, ids of other_body or
        None, `amino_acids` codon ids or None)."""
        lo, hi = span
        start = self.core.centred_start(lo, hi, len(body))
        row = self.core.row(body, start)
        h = self.core.offset
        positions = np.arange(lo, hi) - start + h
        row[positions] = self.tokenizer.mask_id
        other = None if other_body is None else other_body[other_span[0] : other_span[1]]
        return row, positions, (np.arange(hi - lo), body[lo:hi], other, amino_acids)


@dataclasses.dataclass
class _VariantPlan:
    variant: Variant
    error: str | None = None
    consequence: str = ""
    method: str = ""
    masked: int = 0
    masked_rows: list = dataclasses.field(default_factory=list)
    reads: list = dataclasses.field(default_factory=list)  # (row index, what to read there)

    def fail(self, error: str) -> _VariantPlan:
        self.error = error
        return self

    def result(self, outputs) -> VariantScore:
        if self.error is not None:
            return VariantScore(self.variant, None, None, None, 0, "", self.consequence, self.error)
        (first, read), *rest = self.reads
        ref_lp, alt_lp, aa = _read(outputs[first], read)
        if rest:  # two contexts: the alternative allele from its own row
            alt_lp = _read(outputs[rest[0][0]], rest[0][1])[0]
        assert alt_lp is not None  # a one-row plan reads the other allele from its row
        return VariantScore(
            self.variant,
            alt_lp - ref_lp,
            ref_lp,
            alt_lp,
            self.masked,
            self.method,
            self.consequence,
            aa_score=aa,
        )


# Consequences of a change within one codon: those an amino-acid score is defined for.
_ONE_CODON = frozenset({"synonymous", "missense", "nonsense", "stop_lost"})


def _masked_log_probs(part):
    """A `BucketedRunner` reduce: the float64 log-probabilities [kept, vocab] of a row at the
    positions it keeps (every variant reading that row reads its own ids from them)."""

    def reduce(i, out):
        return out[part[i][1]].astype(np.float64)

    return reduce


def _read(log_probs, read) -> tuple[float, float | None, float | None]:
    """(summed log-prob of the row's own ids, of the other allele's ids or None, the
    amino-acid score or None) from a row's masked log-probabilities."""
    at, own, other, amino_acids = read
    own_lp = float(log_probs[at, own].sum())
    other_lp = None if other is None else float(log_probs[at, other].sum())
    aa = None
    if amino_acids is not None:  # one masked codon: its amino acids' log-probabilities
        ref_ids, alt_ids = amino_acids
        lp = log_probs[at[0]]
        aa = float(np.logaddexp.reduce(lp[alt_ids]) - np.logaddexp.reduce(lp[ref_ids]))
    return own_lp, other_lp, aa


def _log_probs(model, tokens):
    """(model, tokens [rows, length]) -> float32 log-softmax of the logits [rows, length, vocab]."""
    return jax.vmap(lambda t: jax.nn.log_softmax(model(t).logits, axis=-1))(tokens)


def pseudo_log_likelihood(
    model: NucleotideTransformer,
    tokenizer: Tokenizer,
    sequence: str,
    *,
    method: Literal["masked", "one_pass_unmasked"] = "masked",
    **options,
) -> TokenLogLikelihood:
    """Per-token log-probabilities and their sum for one sequence (options: `Scorer`'s).

    `method="masked"` masks each token in turn (one forward pass per token, batched: the
    pseudo-log-likelihood); `"one_pass_unmasked"` reads all tokens from one unmasked pass,
    a fast approximation.

    ```python
    ll = pseudo_log_likelihood(model, tok, "ATGGCGAAAGCCTAA")
    print(ll.total, ll.log_probs)  # 5 codons
    ```
    """
    scorer = Scorer(model, tokenizer, **options)
    if method == "masked":
        return scorer.pseudo_log_likelihood(sequence)
    if method == "one_pass_unmasked":
        return scorer.one_pass_log_likelihood(sequence)
    raise ValueError(f"method must be 'masked' or 'one_pass_unmasked', got {method!r}")


def score_variants(
    model: NucleotideTransformer,
    tokenizer: Tokenizer,
    references: Mapping[str, str] | Iterable[NamedSequence],
    variants: Iterable[Variant],
    *,
    coding: bool | None = None,
    method: VariantMethod = "masked_marginal",
    **options,
) -> list[VariantScore]:
    """Zero-shot variant scores: the log-likelihood ratio of alt vs ref, the changed tokens
    masked or (`method="wildtype_marginal"`) not (options: `Scorer`'s; see
    `Scorer.score_variants`).

    ```python
    scores = score_variants(model, tok, read_fasta("genes.fa"), [Variant("geneA", 4, "G", "T")])
    print(scores[0].score, scores[0].consequence)
    ```
    """
    scorer = Scorer(model, tokenizer, **options)
    return scorer.score_variants(references, variants, coding=coding, method=method)
