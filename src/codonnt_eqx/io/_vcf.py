"""Variants from a VCF file (read by pysam), checked against a reference genome."""

from __future__ import annotations

import dataclasses
import gzip
import os
from collections.abc import Mapping

from ..errors import InputError
from ._reference import read_reference


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
    - `error`: why the record does not fit the reference (`ref mismatch: ...`, a position
      past the chromosome's end); None when it fits or was not checked.
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

    With a `reference` (chromosome name -> bases, e.g. from `read_reference`, or a FASTA path,
    of which only the VCF's chromosomes are kept), every REF is compared with the reference
    bases at its position (case-insensitive): a mismatch, or a record past the chromosome's
    end, comes back with `error` set; a CHROM the reference lacks raises `VcfError` (usually
    the wrong genome, or `chr1` against `1`). Symbolic or missing ALTs (`<DEL>`, breakends,
    `*`, `.`) come back with `skip_reason` set. Needs pysam (the `vcf` extra); a file htslib
    cannot parse raises `VcfError`.

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
    checked = []
    for v in variants:
        sequence = reference.get(v.chrom)
        if sequence is None:
            raise VcfError(
                f"{vcf}, {v.where}: no sequence named {v.chrom!r} in the reference: a "
                "different genome build, or other names ('chr1' vs '1')?"
            )
        start = v.pos - 1
        if start + len(v.ref) > len(sequence):
            error = f"position {v.pos} is past the end of {v.chrom} ({len(sequence)} bp)"
            checked.append(dataclasses.replace(v, error=error))
            continue
        actual = sequence[start : start + len(v.ref)].upper()
        if actual != v.ref:
            error = (
                f"ref mismatch: {v.chrom} has {actual!r} at {v.pos}..{v.pos + len(v.ref) - 1}, "
                f"the VCF says {v.ref!r}"
            )
            checked.append(dataclasses.replace(v, error=error))
            continue
        checked.append(v)
    return checked


def _read_records(vcf: str | os.PathLike) -> list[VcfVariant]:
    try:
        # optional (the vcf extra): only VCF input needs it
        import pysam
    except ImportError:
        raise VcfError("reading a VCF needs pysam: pip install 'codonnt-eqx[vcf]'") from None
    source = os.fspath(vcf)
    # htslib reads bgzip but cannot open a plain gzip file by name: hand it a stream.
    stream = gzip.open(source, "rb") if _plain_gzip(source) else None
    quiet = pysam.set_verbosity(0)  # htslib warns per record when the header lacks contigs
    variants: list[VcfVariant] = []
    try:
        with pysam.VariantFile(stream if stream is not None else source) as f:
            for number, rec in enumerate(f, start=1):
                variants += _split(rec, number, source)
    except (OSError, ValueError) as e:
        where = f", after record {variants[-1].record}" if variants else ""
        raise VcfError(f"{source}{where}: not a readable VCF ({e})") from None
    finally:
        pysam.set_verbosity(quiet)
        if stream is not None:
            stream.close()
    return variants


def _split(rec, number: int, source: str) -> list[VcfVariant]:
    """One `VcfVariant` per ALT of a pysam record."""
    chrom, pos, ref = rec.chrom, int(rec.pos), (rec.ref or "").upper()
    vid = rec.id or "."
    if not ref or not set(ref) <= _BASES:
        raise VcfError(f"{source}, record {number} ({chrom}:{pos}): REF {rec.ref!r} is not bases")
    out = []
    for alt in rec.alts or (".",):
        alt = alt.upper()
        reason = None
        if alt in (".", "*") or alt.startswith("<") or "[" in alt or "]" in alt:
            reason = f"symbolic or missing ALT {alt!r}: not a sequence change, not scored"
        elif not set(alt) <= _BASES:
            reason = f"ALT {alt!r} is not bases: not scored"
        out.append(VcfVariant(chrom, pos, vid, ref, alt, number, skip_reason=reason))
    return out


def _plain_gzip(path: str) -> bool:
    """gzip but not BGZF (whose header carries the `BC` extra field)."""
    try:
        with open(path, "rb") as f:
            head = f.read(18)
    except OSError as e:
        raise VcfError(f"{path}: cannot read ({e.strerror})") from None
    if head[:2] != b"\x1f\x8b":
        return False
    return not (len(head) >= 14 and head[3] & 4 and head[12:14] == b"BC")
