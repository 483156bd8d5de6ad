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
from ._vcf import VcfVariant


@dataclasses.dataclass(frozen=True)
class VariantContext:
    """Where one genomic variant is scored.

    - `variant`: the variant in the coordinates of the scored sequence (its `sequence_name`
      is a key of the sequences `variant_contexts` returns), alleles on its strand.
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

    The rule: a variant whose whole REF lies in one piece of a gene (the first in `genes`
    that holds it) is scored in that gene's sequence, on the gene's strand (a minus-strand
    gene is reverse-complemented, and so are the alleles), so its codon frame is the gene's.
    Any other variant is scored on the plus strand in the window of the chromosome `flank`
    bases either side of it, the window starting at a multiple of `period` (0-based) so that
    a k-mer tokenizer's frame is the chromosome's whatever the variant. Variants with an
    `error` or `skip_reason` get None. Sequences are upper-cased.

    **Arguments:** `variants` (from `read_vcf_variants`, checked against `reference`),
    `reference` (name -> bases), `genes` (from `read_genes`), `flank` (bases of context
    either side: e.g. what fills one model window), `period` (e.g. the tokenizer's k).
    """
    if flank < 0 or period < 1:
        raise ValueError(f"need flank >= 0 and period >= 1, got {flank}, {period}")
    index = _GeneIndex(genes)
    sequences: dict[str, str] = {}
    gene_names: dict[int, str] = {}
    contexts: list[VariantContext | None] = []
    for v in variants:
        if v.error is not None or v.skip_reason is not None:
            contexts.append(None)
            continue
        chrom = reference[v.chrom]
        start, end = v.pos - 1, v.pos - 1 + len(v.ref)
        found = index.find(v.chrom, start, end)
        if found is None:
            lo = max(0, start - flank)
            lo -= lo % period
            hi = min(len(chrom), end + flank)
            name = f"{v.chrom}:{lo + 1}-{hi}"
            sequences.setdefault(name, chrom[lo:hi].upper())
            contexts.append(VariantContext(Variant(name, start - lo + 1, v.ref, v.alt), "+", ""))
            continue
        i, gene, offset = found
        if i not in gene_names:
            name = gene.name
            while name in sequences:  # two genes (or a gene and a window) of one name
                name += "'"
            gene_names[i] = name
            sequences[name] = _gene_sequence(chrom, gene)
        name = gene_names[i]
        if gene.strand == "-":
            moved = Variant(name, offset + 1, reverse_complement(v.ref), reverse_complement(v.alt))
        else:
            moved = Variant(name, offset + 1, v.ref, v.alt)
        contexts.append(VariantContext(moved, gene.strand, gene.name))
    return contexts, sequences


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
    before = 0  # bases of the pieces upstream on the gene's strand
    pieces = gene.segments if gene.strand == "+" else gene.segments[::-1]
    for a, b in pieces:
        if a <= start and end <= b:
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
                row += (None, None, None, None, "", "", v.error or v.skip_reason)
            else:
                row += (s.score, s.ref_log_prob, s.alt_log_prob, s.masked_tokens, s.method)
                row += (s.consequence, s.error)
            f.write("\t".join(map(_cell, row)) + "\n")
