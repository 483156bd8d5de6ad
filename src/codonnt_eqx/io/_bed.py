"""BED regions in (0-based, half-open), and their sequences cut from a reference genome."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Mapping

from ..errors import InputError
from ..tokenizers import reverse_complement
from ._text_files import UNREADABLE, open_text


class BedError(InputError):
    """A BED line that cannot be read, or a region the reference does not have; the message
    names the file and the line."""


@dataclasses.dataclass(frozen=True)
class BedRegion:
    """One BED line: bases `[start, end)` (0-based, end exclusive) of `chrom`.

    - `name`: the 4th column, or `chrom:start-end` (1-based, inclusive, as genome browsers
      show it) when the line has none or `.`.
    - `strand`: `"+"` or `"-"`; a line without a strand column, or with `.`, is `"+"`.
    - `origin`: where the line is (`"regions.bed, line 4"`), for messages.
    """

    chrom: str
    start: int
    end: int
    name: str
    strand: str = "+"
    origin: str = dataclasses.field(default="", compare=False)


def read_bed(path: str | os.PathLike) -> list[BedRegion]:
    """The regions of a BED file (plain or gzipped): tab-separated `chrom start end [name]
    [score] [strand] ...`, 0-based half-open coordinates; further columns are ignored.

    Blank lines, `#` comments and `track`/`browser` lines are skipped. A line with fewer than
    3 columns, a start or end that is not a whole number, `end <= start`, or a strand other
    than `+`, `-`, `.` raises `BedError` naming the file and the line.

    ```python
    regions = read_bed("promoters.bed")
    print(regions[0].chrom, regions[0].start, regions[0].end, regions[0].strand)
    ```
    """
    return [region for region, _ in bed_lines(path, BedError)]


def bed_lines(path: str | os.PathLike, error: type[InputError]) -> Iterator[tuple[BedRegion, str]]:
    """`read_bed`'s regions, each with its raw 6th column (`""` when absent: a gene file
    needs a strand where a region does not), raising `error` for a bad line."""
    for line_no, fields in table_lines(path, error):
        where = f"{path}, line {line_no}"
        if len(fields) < 3:
            hint = " (columns must be separated by tabs)" if " " in fields[0] else ""
            raise error(
                f"{where}: expected at least 3 tab-separated columns (chrom, start, end), "
                f"got {len(fields)}{hint}"
            )
        chrom, start, end = fields[:3]
        if not chrom:
            raise error(f"{where}: empty chrom")
        for column, value in (("start", start), ("end", end)):
            if not value.isascii() or not value.isdigit():
                raise error(f"{where}: {column} {value!r} is not a whole number")
        begin, stop = int(start), int(end)
        if stop <= begin:
            raise error(
                f"{where}: end {stop} is not after start {begin} (BED is 0-based, half-open)"
            )
        name = fields[3] if len(fields) > 3 and fields[3] not in ("", ".") else ""
        strand = fields[5] if len(fields) > 5 else ""
        if strand not in ("+", "-", ".", ""):
            raise error(f"{where}: strand {strand!r} is not +, - or .")
        region = BedRegion(
            chrom,
            begin,
            stop,
            name or f"{chrom}:{begin + 1}-{stop}",
            "-" if strand == "-" else "+",
            where,
        )
        yield region, strand


def region_sequence(reference: Mapping[str, str], region: BedRegion) -> str:
    """The region's bases, upper-cased, reverse-complemented on the minus strand. A chrom
    the reference lacks, or a region past its end, raises `BedError` naming the region's
    line."""
    where = region.origin or f"{region.chrom}:{region.start}-{region.end}"
    sequence = reference.get(region.chrom)
    if sequence is None:
        raise BedError(f"{where}: no sequence named {region.chrom!r} in the reference")
    if region.end > len(sequence):
        raise BedError(
            f"{where}: region {region.start}-{region.end} is past the end of {region.chrom} "
            f"({len(sequence)} bp)"
        )
    bases = sequence[region.start : region.end].upper()
    return reverse_complement(bases) if region.strand == "-" else bases


def table_lines(
    path: str | os.PathLike, error: type[InputError], stop_at: str | None = None
) -> Iterator[tuple[int, list[str]]]:
    """(line number, tab-separated fields) of a plain or gzipped text table, skipping blank
    lines, `#` comments and UCSC `track`/`browser` lines, up to a line starting `stop_at`."""
    try:
        with open_text(path) as f:
            for line_no, line in enumerate(f, start=1):
                line = line.rstrip("\r\n")
                if stop_at is not None and line.startswith(stop_at):
                    return
                if not line.strip() or line.startswith("#"):
                    continue
                if line.split(None, 1)[0] in ("track", "browser"):
                    continue
                yield line_no, [x.strip() for x in line.split("\t")]
    except UNREADABLE as e:
        raise error(f"{path}: not a readable text table ({e})") from None
    except OSError as e:
        raise error(f"{path}: cannot read ({e.strerror or e})") from None
