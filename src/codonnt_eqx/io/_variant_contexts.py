"""Placing genomic variants (VCF coordinates) in the sequences they are scored in: the
gene's own sequence on its strand when a gene holds the variant, else a plus-strand window of
the chromosome around it; and the table of their scores."""

from __future__ import annotations

import bisect
import dataclasses
import os
from collections.abc import Iterable, Mapping, Sequence

from ..inference import Variant, VariantScore
from ..tokenizers import reverse_complement
from ._atomic_file import atomic_output
from ._genes import Gene
from ._variant_files import SCORE_COLUMNS, _cell
from ._vcf import VcfError, VcfVariant


@dataclasses.dataclass(frozen=True)
class VariantContext:
    """Where one genomic variant is scored.

    - `variant`: the variant in the coordinates of the scored sequence (its `sequence_name`
      is a key of the sequences `variant_contexts` returns), alleles on its strand, trimmed
      of shared bases (`-` for the empty allele of an indel).
    - `strand`: `"+"`, or `"-"` when scored on a minus-strand gene's reverse complement.
    - `gene`: the gene's name, or `""` for a genomic window (no consequence).
    """

    variant: Variant
    strand: str
    gene: str


def variant_contexts(
    variants: Sequence[VcfVariant],
    reference: Mapping[str, str],
    *,
    genes: Sequence[Gene] = (),
    flank: int,
    period: int = 1,
) -> tuple[list[VariantContext | None], dict[str, str]]:
    """The sequence each variant is scored in, and those sequences by name.

    The rule: REF and ALT are first trimmed of the bases they share at either end (the VCF
    anchor base of an indel), leaving the change itself. A change whose REF bases all lie in
    one piece of a gene (the first in `genes` that holds it), or an insertion strictly inside
    one (not at its edge: before the start codon or after the stop), is scored in that gene's
    sequence, on the gene's strand (a minus-strand gene is reverse-complemented, and so are
    the alleles), so its codon frame is the gene's. Any other variant is scored on the plus
    strand in the window of the chromosome `flank` bases either side of it, the window
    starting at a multiple of `period` (0-based) so that a k-mer tokenizer's frame is the
    chromosome's whatever the variant; a window is named
    `chrom:first-last` (1-based, inclusive). An empty allele is `-`. A name already taken
    (two genes of one name, a gene named like a window) gets a `'` added. Variants with an
    `error` or `skip_reason` get None; a CHROM `reference` lacks raises `VcfError`.
    Sequences are upper-cased.

    **Arguments:** `variants` (from `read_vcf_variants`, checked against `reference`),
    `reference` (name -> bases), `genes` (from `read_genes`), `flank` (bases of context
    either side: e.g. what fills one model window), `period` (e.g. the tokenizer's k).
    """
    if flank < 0 or period < 1:
        raise ValueError(f"need flank >= 0 and period >= 1, got {flank}, {period}")
    index = _GeneIndex(genes)
    sequences: dict[str, str] = {}
    names: dict[tuple, str] = {}  # ("gene", i) or ("window", chrom, lo, hi) -> its name
    contexts: list[VariantContext | None] = []
    for v in variants:
        if v.error is not None or v.skip_reason is not None:
            contexts.append(None)
            continue
        chrom = reference.get(v.chrom)
        if chrom is None:
            raise VcfError(f"{v.where}: no sequence named {v.chrom!r} in the reference")
        start, ref, alt = _minimal(v.pos - 1, v.ref, v.alt)
        end = start + len(ref)
        found = index.find(v.chrom, start, end)
        if found is None:
            lo = max(0, start - flank)
            lo -= lo % period
            hi = min(len(chrom), end + flank)
            key = ("window", v.chrom, lo, hi)
            if key not in names:
                names[key] = _free_name(f"{v.chrom}:{lo + 1}-{hi}", sequences)
                sequences[names[key]] = chrom[lo:hi].upper()
            name = names[key]
            placed = Variant(name, start - lo + 1, ref or "-", alt or "-")
            contexts.append(VariantContext(placed, "+", ""))
            continue
        i, gene, offset = found
        if ("gene", i) not in names:
            names["gene", i] = _free_name(gene.name, sequences)
            sequences[names["gene", i]] = _gene_sequence(chrom, gene)
        name = names["gene", i]
        if gene.strand == "-":
            ref, alt = reverse_complement(ref), reverse_complement(alt)
        contexts.append(
            VariantContext(
                Variant(name, offset + 1, ref or "-", alt or "-"), gene.strand, gene.name
            )
        )
    return contexts, sequences


def _free_name(wanted: str, taken: Mapping[str, str]) -> str:
    """`wanted`, or with `'` added while another sequence has that name (two genes of one
    name, a gene named like a window): one name never stands for two sequences."""
    while wanted in taken:
        wanted += "'"
    return wanted


def _minimal(start: int, ref: str, alt: str) -> tuple[int, str, str]:
    """The change without the bases REF and ALT share at their ends (the VCF anchor base of
    an indel, or padding): `(0-based start, ref, alt)`, one allele empty for an indel."""
    n = 0
    while n < min(len(ref), len(alt)) and ref[-1 - n] == alt[-1 - n]:
        n += 1
    ref, alt = ref[: len(ref) - n], alt[: len(alt) - n]
    n = 0
    while n < min(len(ref), len(alt)) and ref[n] == alt[n]:
        n += 1
    return start + n, ref[n:], alt[n:]


def _gene_sequence(chrom: str, gene: Gene) -> str:
    bases = "".join(chrom[a:b] for a, b in gene.segments).upper()
    return reverse_complement(bases) if gene.strand == "-" else bases


class _GeneIndex:
    """Genes by chromosome, sorted by start, for finding the one that holds a variant."""

    def __init__(self, genes: Sequence[Gene]):
        self.by_chrom: dict[str, list[tuple[int, int, Gene]]] = {}
        for i, g in enumerate(genes):
            self.by_chrom.setdefault(g.chrom, []).append((g.start, i, g))
        for entries in self.by_chrom.values():
            entries.sort(key=lambda e: (e[0], e[1]))
        self.starts = {c: [e[0] for e in es] for c, es in self.by_chrom.items()}
        self.longest = max((g.end - g.start for g in genes), default=0)

    def find(self, chrom: str, start: int, end: int) -> tuple[int, Gene, int] | None:
        """(file index, gene, 0-based offset of the variant's 5' end in the gene's
        sequence) of the first gene with `[start, end)` inside one of its pieces."""
        entries = self.by_chrom.get(chrom, [])
        starts = self.starts.get(chrom, [])
        lo = bisect.bisect_left(starts, start - self.longest)
        hi = bisect.bisect_right(starts, start)
        best = None
        for _, i, gene in entries[lo:hi]:
            if best is not None and best[0] < i:
                continue
            offset = _offset_in(gene, start, end)
            if offset is not None:
                best = (i, gene, offset)
        return best


def _offset_in(gene: Gene, start: int, end: int) -> int | None:
    """Where `[start, end)` is in the gene's sequence, if in one piece; an insertion
    (`start == end`, between two bases) only strictly inside one: at a piece's edge it is
    outside the coding sequence (before the start codon, after the stop, in an intron)."""
    before = 0  # bases of the pieces upstream on the gene's strand
    pieces = gene.segments if gene.strand == "+" else gene.segments[::-1]
    for a, b in pieces:
        inside = a < start < b if start == end else a <= start and end <= b
        if inside:
            return before + (start - a if gene.strand == "+" else b - end)
        before += b - a
    return None


VCF_SCORE_COLUMNS = (
    "chrom",
    "pos",
    "id",
    "ref",
    "alt",
    "strand",
    "gene",
    "sequence_name",
    "position",
    "sequence_ref",
    "sequence_alt",
    *SCORE_COLUMNS[4:],
)


def write_vcf_scores(
    path: str | os.PathLike,
    rows: Iterable[tuple[VcfVariant, VariantContext | None, VariantScore | None]],
) -> None:
    """A TSV with a header (`VCF_SCORE_COLUMNS`), one row per VCF variant (per ALT), written
    atomically: the VCF's `chrom pos id ref alt`, where it was scored (`strand gene
    sequence_name position sequence_ref sequence_alt`: the sequence, the 1-based position and
    the alleles on the scored strand), then the columns of `score --variants`. A variant not
    scored has its reason in `error` (its `error` or `skip_reason`, or the scorer's)."""
    with atomic_output(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write("\t".join(VCF_SCORE_COLUMNS) + "\n")
        for v, context, s in rows:
            row: tuple = (v.chrom, v.pos, v.id, v.ref, v.alt)
            if context is None:
                row += ("", "", "", "", "", "")
            else:
                c = context.variant
                row += (context.strand, context.gene, c.sequence_name, c.position, c.ref, c.alt)
            if s is None:
                row += (None, None, None, None, "", "", None, v.error or v.skip_reason)
            else:
                row += (s.score, s.ref_log_prob, s.alt_log_prob, s.masked_tokens, s.method)
                row += (s.consequence, s.aa_score, s.error)
            f.write("\t".join(map(_cell, row)) + "\n")
