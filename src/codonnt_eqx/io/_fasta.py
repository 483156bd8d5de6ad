"""Reading FASTA files, plain or gzipped."""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, TextIO

from ..errors import InputError

# Binary streams a user passes (sys.stdin.buffer, open(..., 'rb'), io.BytesIO, gzip files).
BinaryStream = io.RawIOBase | io.BufferedIOBase | BinaryIO


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


_GZIP_MAGIC = b"\x1f\x8b"


class _Prefixed(io.RawIOBase):
    """`head` then the rest of `stream`: the bytes read to sniff the format are put back
    without a second open or a seek, so pipes, FIFOs and stdin work."""

    def __init__(self, head: bytes, stream: BinaryStream):
        self._head, self._stream = head, stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n], self._head = self._head[:n], self._head[n:]
            return n
        data = self._stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


@contextlib.contextmanager
def _lines(source: str | os.PathLike | BinaryStream) -> Iterator[TextIO]:
    """Text lines of a plain or gzipped FASTA source, opened once."""
    owned = isinstance(source, (str, os.PathLike))
    stream = open(source, "rb") if owned else source
    try:
        head = b""
        while len(head) < 2:  # a pipe may deliver fewer bytes than asked
            chunk = stream.read(2 - len(head))
            if not chunk:
                break
            head += chunk
        raw: BinaryStream = io.BufferedReader(_Prefixed(head, stream))
        if head == _GZIP_MAGIC:
            raw = gzip.GzipFile(fileobj=raw, mode="rb")
        # utf-8-sig: a byte-order mark (Windows editors) is not part of the first header.
        yield io.TextIOWrapper(raw, encoding="utf-8-sig")
    finally:
        if owned:
            stream.close()


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
        with _lines(source) as f:
            for line_no, line in enumerate(f, start=1):
                line = line.strip()
                if not line or line.startswith(";"):
                    continue
                if line.startswith(">"):
                    if header is not None:
                        yield record()
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
    except (UnicodeDecodeError, EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise FastaError(f"{path}: not a readable FASTA file ({e})") from e
    if header is None:
        raise FastaError(f"{path}: no FASTA records found")
    yield record()


def _stream_name(stream) -> str:
    name = getattr(stream, "name", None)
    return name if isinstance(name, str) else "<stream>"
