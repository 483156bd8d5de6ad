"""Reading FASTA files, plain or gzipped."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

from ..errors import InputError
from ._text_files import UNREADABLE, BinaryStream, open_text


class FastaError(InputError):
    """A malformed FASTA file; the message names the file and the line."""


@dataclass(frozen=True)
class FastaRecord:
    """One FASTA record: `name` is the header's first word, `description` the rest, `line`
    the header's line number in its file (1-based; 0 when not read from a file)."""

    name: str
    description: str
    sequence: str
    line: int = field(default=0, compare=False)


def read_fasta(source: str | os.PathLike | BinaryStream) -> list[FastaRecord]:
    """Read every record of a FASTA file (gzip detected from its content, not its name).

    `source` is a path or a binary stream (e.g. `sys.stdin.buffer`); it is read once, front
    to back, so pipes and process substitutions work. Sequence lines are concatenated with
    whitespace removed; `;` comment lines are skipped. Raises `FastaError` naming the file and
    line for sequence data before the first header, an empty header, a record without
    sequence, undecodable or corrupt content, or a file with no records.
    """
    return list(iter_fasta(source))


def iter_fasta(source: str | os.PathLike | BinaryStream) -> Iterator[FastaRecord]:
    """`read_fasta` one record at a time: memory holds one record, whatever the file size.

    Records are yielded as they are read; an error later in the file is raised when reached.
    """
    path = str(source) if isinstance(source, (str, os.PathLike)) else _stream_name(source)
    header: tuple[str, str, int] | None = None
    chunks: list[str] = []

    def record() -> FastaRecord:
        assert header is not None  # called after a header line only
        name, description, line_no = header
        if not chunks:
            raise FastaError(f"{path}, line {line_no}: record {name!r} has no sequence")
        return FastaRecord(name, description, "".join(chunks), line_no)

    try:
        # utf-8-sig: a byte-order mark (Windows editors) is not part of the first header.
        with open_text(source, encoding="utf-8-sig") as f:
            for line_no, line in enumerate(f, start=1):
                line = line.strip()
                if not line or line.startswith(";"):
                    continue
                if line.startswith(">"):
                    if header is not None:
                        yield record()
                    # The name ends at any whitespace (a tab too, as samtools and BLAST read it).
                    parts = line[1:].split(None, 1)
                    name = parts[0] if parts else ""
                    description = parts[1] if len(parts) > 1 else ""
                    if not name:
                        raise FastaError(f"{path}, line {line_no}: empty header")
                    header, chunks = (name, description, line_no), []
                elif header is None:
                    raise FastaError(
                        f"{path}, line {line_no}: sequence data before the first '>' header"
                    )
                else:
                    chunks.append("".join(line.split()))
    except UNREADABLE as e:
        raise FastaError(f"{path}: not a readable FASTA file ({e})") from e
    if header is None:
        raise FastaError(f"{path}: no FASTA records found")
    yield record()


def _stream_name(stream) -> str:
    name = getattr(stream, "name", None)
    return name if isinstance(name, str) else "<stream>"
