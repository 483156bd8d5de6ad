"""Gene models for strand-aware variant scoring: stranded coding intervals from a BED6 file
or the CDS features of a GFF3 file."""

from __future__ import annotations

import dataclasses
import os
import urllib.parse

from ..errors import InputError
from ._bed import bed_lines, table_lines
from ._text_files import UNREADABLE, open_text


class GeneFileError(InputError):
    """A gene annotation that cannot be used; the message names the file and the line."""


@dataclasses.dataclass(frozen=True)
class Gene:
    """A gene's coding sequence on the genome: `segments` are its `(start, end)` pieces
    (0-based, half-open, ascending) on `chrom`, joined in transcription order (descending
    on the `-` strand, each reverse-complemented) to make the gene's sequence."""

    name: str
    chrom: str
    strand: str
    segments: tuple[tuple[int, int], ...]
    origin: str = dataclasses.field(default="", compare=False)

    @property
    def start(self) -> int:
        return self.segments[0][0]

    @property
    def end(self) -> int:
        return self.segments[-1][1]


def read_genes(path: str | os.PathLike) -> list[Gene]:
    """Genes from a BED file (one stranded interval per line, the 6th column `+` or `-`;
    the 4th column names it) or a GFF3 file (`.gff`, `.gff3`, optionally gzipped, or one that
    starts with `##gff-version 3`): the `CDS` features, joined per `Parent` (a spliced CDS;
    a feature without `Parent` is its own gene, named by its `ID`).

    Raises `GeneFileError` naming the file and line for a BED line without a strand, a GFF3
    line with fewer than 9 columns, bad coordinates, or a CDS whose pieces disagree on
    chromosome or strand, or overlap.

    ```python
    genes = read_genes("genes.gff3")
    print(genes[0].name, genes[0].strand, genes[0].segments)
    ```
    """
    if _is_gff(path):
        return _read_gff3(path)
    genes = []
    for region, strand in bed_lines(path, GeneFileError):
        if strand not in ("+", "-"):
            raise GeneFileError(
                f"{region.origin}: a gene needs its strand (+ or -) in the 6th column (BED6)"
            )
        segments = ((region.start, region.end),)
        genes.append(Gene(region.name, region.chrom, strand, segments, region.origin))
    return genes


def _is_gff(path) -> bool:
    name = os.fspath(path).lower().removesuffix(".gz")
    if name.endswith((".gff", ".gff3")):
        return True
    try:
        with open_text(path) as f:
            return f.readline().startswith("##gff-version")
    except UNREADABLE:
        return False  # not a GFF3 header: read as BED, which names the bad line
    except OSError as e:
        raise GeneFileError(f"{path}: cannot read ({e.strerror or e})") from None


def _read_gff3(path) -> list[Gene]:
    pieces: dict[str, list[tuple[str, str, int, int, str]]] = {}
    for line_no, fields in _gff_lines(path):
        where = f"{path}, line {line_no}"
        if len(fields) < 9:
            raise GeneFileError(
                f"{where}: expected 9 tab-separated GFF3 columns, got {len(fields)}"
            )
        chrom, _, kind, start, end, _, strand, _, attributes = fields[:9]
        if kind != "CDS":
            continue
        for column, value in (("start", start), ("end", end)):
            if not value.isascii() or not value.isdigit():
                raise GeneFileError(f"{where}: {column} {value!r} is not a whole number")
        begin, stop = int(start) - 1, int(end)  # GFF3: 1-based, inclusive
        if begin < 0 or stop <= begin:
            raise GeneFileError(f"{where}: CDS {start}..{end} is not a 1-based interval")
        if strand not in ("+", "-"):
            raise GeneFileError(f"{where}: CDS strand {strand!r} is not + or -")
        attrs = _attributes(attributes)
        parent = attrs.get("Parent", "").split(",")[0]
        key = parent or attrs.get("ID") or f"{chrom}:{begin + 1}-{stop}"
        pieces.setdefault(key, []).append((chrom, strand, begin, stop, where))
    genes = []
    for name, parts in pieces.items():
        chrom, strand, *_, where = parts[0]
        for other in parts[1:]:
            if (other[0], other[1]) != (chrom, strand):
                raise GeneFileError(
                    f"{other[4]}: CDS of {name!r} is on {other[0]} {other[1]}, its first piece "
                    f"({where}) on {chrom} {strand}"
                )
        segments = sorted((p[2], p[3]) for p in parts)
        for (_, a_end), (b_start, _) in zip(segments, segments[1:], strict=False):
            if b_start < a_end:
                raise GeneFileError(f"{where}: CDS pieces of {name!r} overlap")
        genes.append(Gene(name, chrom, strand, tuple(segments), where))
    return genes


def _gff_lines(path):
    """(line number, fields) of the feature lines of a GFF3 file, up to a `##FASTA` section."""
    yield from table_lines(path, GeneFileError, stop_at="##FASTA")


def _attributes(column: str) -> dict[str, str]:
    out = {}
    for item in column.split(";"):
        key, sep, value = item.strip().partition("=")
        if sep:
            out[key] = urllib.parse.unquote(value)
    return out
