"""Variants from a VCF file (read by pysam), checked against a reference genome."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Mapping

from ..errors import InputError
from ._reference import read_reference
from ._text_files import file_compression


class VcfError(InputError):
    """A VCF file that cannot be read, or a record the reference cannot place; the message
    names the file and the record."""


@dataclasses.dataclass(frozen=True)
class VcfVariant:
    """One ALT of one VCF record (a multi-allelic record gives one `VcfVariant` per ALT).

    - `chrom`, `pos` (1-based, as in the VCF), `id` (`"."` when missing), `ref`, `alt`
      (upper-cased; VCF's anchor base of an indel is kept: `ref` is what `alt` replaces).
    - `record`: the record's number in the file (1 for the first record after the header).
    - `skip_reason`: why this ALT is not a sequence change that can be scored (a symbolic
      `<DEL>`, a breakend, `*`, or `.`); None otherwise. Never an error in the file.
    - `error`: why the record is invalid: a REF or ALT that is not bases, or (checked
      against a reference) a REF that does not fit it (`ref mismatch: ...`, a position
      before the chromosome's first base or past its end); None otherwise.
    """

    chrom: str
    pos: int
    id: str
    ref: str
    alt: str
    record: int
    skip_reason: str | None = None
    error: str | None = None

    @property
    def where(self) -> str:
        return f"record {self.record} ({self.chrom}:{self.pos} {self.ref}>{self.alt})"


_BASES = frozenset("ACGTN")


def read_vcf_variants(
    vcf: str | os.PathLike,
    reference: Mapping[str, str] | str | os.PathLike | None = None,
) -> list[VcfVariant]:
    """The variants of a VCF (`.vcf`, bgzipped or gzipped `.vcf.gz`, or `.bcf`), one per ALT.

    A REF or ALT that is not bases comes back with `error` set (the record is invalid; the
    others are still read). With a `reference` (chromosome name -> bases, e.g. from
    `read_reference`, or a FASTA path, of which only the VCF's chromosomes are kept), every
    REF is compared with the reference bases at its position (case-insensitive): a mismatch,
    or a position outside the chromosome, comes back with `error` set; a CHROM the reference
    lacks raises `VcfError` (usually the wrong genome, or `chr1` against `1`). Symbolic or
    missing ALTs (`<DEL>`, breakends, `*`, `.`) come back with `skip_reason` set. Needs pysam
    (the `vcf` extra); a file htslib cannot parse, or a gzip file cut short, raises
    `VcfError` naming the file.

    ```python
    variants = read_vcf_variants("calls.vcf.gz", "genome.fa.gz")
    print(variants[0].chrom, variants[0].pos, variants[0].ref, variants[0].alt)
    ```
    """
    variants = _read_records(vcf)
    if reference is None:
        return variants
    if not isinstance(reference, Mapping):
        reference = read_reference(reference, names={v.chrom for v in variants})
    return [_checked(v, reference, vcf) for v in variants]


def _checked(v: VcfVariant, reference: Mapping[str, str], vcf) -> VcfVariant:
    """`v` with `error` set where its REF does not fit the reference."""
    sequence = reference.get(v.chrom)
    if sequence is None:
        raise VcfError(
            f"{vcf}, {v.where}: no sequence named {v.chrom!r} in the reference: a "
            "different genome build, or other names ('chr1' vs '1')?"
        )
    if v.error is not None:
        return v
    start, end = v.pos - 1, v.pos - 1 + len(v.ref)
    error = None
    if start < 0:
        error = f"position {v.pos} is before the first base of {v.chrom} (VCF POS is 1-based)"
    elif start >= len(sequence):
        error = f"position {v.pos} is past the end of {v.chrom} ({len(sequence)} bp)"
    elif end > len(sequence):
        error = f"REF {v.ref!r} at {v.pos} runs past the end of {v.chrom} ({len(sequence)} bp)"
    elif (actual := sequence[start:end].upper()) != v.ref:
        error = f"ref mismatch: {v.chrom} has {actual!r} at {v.pos}..{end}, the VCF says {v.ref!r}"
    return v if error is None else dataclasses.replace(v, error=error)


def _read_records(vcf: str | os.PathLike) -> list[VcfVariant]:
    try:
        # optional (the vcf extra): only VCF input needs it
        import pysam
    except ImportError:
        raise VcfError("reading a VCF needs pysam: pip install 'codonnt-eqx[vcf]'") from None
    source = os.fspath(vcf)
    try:
        kind = file_compression(source)
    except OSError as e:
        raise VcfError(f"{source}: cannot read ({e.strerror or e})") from None
    # htslib reads a plain gzip file from a descriptor only (by name it would seek): hand it
    # one, and keep the descriptor's repr out of its messages.
    handle = open(source, "rb") if kind == "gzip" else None
    quiet = pysam.set_verbosity(0)  # htslib warns per record when the header lacks contigs
    variants: list[VcfVariant] = []
    f = None
    try:
        f = pysam.VariantFile(handle if handle is not None else source)
        for number, rec in enumerate(f, start=1):
            variants += _split(rec, number)
    except (OSError, ValueError) as e:
        where = f", after record {variants[-1].record}" if variants else ""
        reason = str(e).replace(repr(handle), source) if handle is not None else str(e)
        if kind and "truncated" in reason:
            reason += ": the compressed data ends early or is corrupt"
        raise VcfError(f"{source}{where}: not a readable VCF ({reason})") from None
    finally:
        pysam.set_verbosity(quiet)
        if f is not None:
            # After a read error, pysam's close() fails too (for a descriptor, building its
            # message raises TypeError); the read error is the one to report.
            with contextlib.suppress(OSError, TypeError):
                f.close()
        if handle is not None:
            handle.close()
    return variants


def _split(rec, number: int) -> list[VcfVariant]:
    """One `VcfVariant` per ALT of a pysam record; a REF or ALT that is not bases is the
    record's `error` (reported per record: `--skip-invalid` goes on past it)."""
    chrom, pos, ref = rec.chrom, int(rec.pos), (rec.ref or "").upper()
    vid = rec.id or "."
    bad_ref = not ref or not set(ref) <= _BASES
    out = []
    for alt in rec.alts or (".",):
        alt = alt.upper()
        reason = error = None
        if bad_ref:
            error = f"REF {rec.ref!r} is not bases (A, C, G, T, N)"
        elif alt in (".", "*") or alt.startswith("<") or "[" in alt or "]" in alt:
            reason = f"symbolic or missing ALT {alt!r}: not a sequence change, not scored"
        elif not set(alt) <= _BASES:
            error = f"ALT {alt!r} is not bases (A, C, G, T, N)"
        out.append(VcfVariant(chrom, pos, vid, ref, alt, number, reason, error))
    return out
