"""Reading FASTA files, plain or gzipped."""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass


class FastaError(ValueError):
    """A malformed FASTA file; the message names the file and the line."""


@dataclass(frozen=True)
class FastaRecord:
    """One FASTA record: `name` is the header's first word, `description` the rest."""

    name: str
    description: str
    sequence: str


def read_fasta(path: str | os.PathLike) -> list[FastaRecord]:
    """Read every record of a FASTA file (gzip detected from its content, not its name).

    Sequence lines are concatenated with whitespace removed; `;` comment lines are skipped.
    Raises `FastaError` naming the file and line for sequence data before the first header,
    an empty header, a record without sequence, or a file with no records.
    """
    with open(path, "rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    opener = gzip.open if gzipped else open
    records: list[FastaRecord] = []
    header: tuple[str, str, int] | None = None
    chunks: list[str] = []

    def close_record() -> None:
        if header is None:
            return
        name, description, line_no = header
        if not chunks:
            raise FastaError(f"{path}, line {line_no}: record {name!r} has no sequence")
        records.append(FastaRecord(name, description, "".join(chunks)))

    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for line_no, line in enumerate(f, start=1):
                line = line.strip()
                if not line or line.startswith(";"):
                    continue
                if line.startswith(">"):
                    close_record()
                    name, _, description = line[1:].strip().partition(" ")
                    if not name:
                        raise FastaError(f"{path}, line {line_no}: empty header")
                    header, chunks = (name, description.strip(), line_no), []
                elif header is None:
                    raise FastaError(
                        f"{path}, line {line_no}: sequence data before the first '>' header"
                    )
                else:
                    chunks.append("".join(line.split()))
    except (UnicodeDecodeError, EOFError, gzip.BadGzipFile) as e:
        raise FastaError(f"{path}: not a readable FASTA file ({e})") from e
    close_record()
    if not records:
        raise FastaError(f"{path}: no FASTA records found")
    return records
