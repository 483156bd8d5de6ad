"""Opening text files that may be gzipped: the compression is read from the first bytes, not
the name, and the file is opened once, so pipes, FIFOs and stdin work."""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import zlib
from collections.abc import Iterator
from typing import BinaryIO, TextIO

# Binary streams a user passes (sys.stdin.buffer, open(..., 'rb'), io.BytesIO, gzip files).
BinaryStream = io.RawIOBase | io.BufferedIOBase | BinaryIO

_GZIP_MAGIC = b"\x1f\x8b"

# The exceptions of reading text that is not valid UTF-8, or gzip data that is cut short or
# corrupt (BadGzipFile is an OSError: catch these before OSError).
UNREADABLE = (UnicodeDecodeError, EOFError, gzip.BadGzipFile, zlib.error)


def compression(head: bytes) -> str:
    """`"bgzf"` (blocked gzip, whose header carries the `BC` extra field), `"gzip"` or `""`
    (not compressed), from a file's first 18 bytes."""
    if head[:2] != _GZIP_MAGIC:
        return ""
    bgzf = len(head) >= 14 and head[3] & 4 and head[12:14] == b"BC"
    return "bgzf" if bgzf else "gzip"


def file_compression(path: str | os.PathLike) -> str:
    """`compression` of the file at `path` (an `OSError` if it cannot be read)."""
    with open(path, "rb") as f:
        return compression(f.read(18))


class _Prefixed(io.RawIOBase):
    """`head` then the rest of `stream`: the bytes read to sniff the format are put back
    without a second open or a seek."""

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
def open_text(
    source: str | os.PathLike | BinaryStream, encoding: str = "utf-8"
) -> Iterator[TextIO]:
    """The text of a plain or gzipped file (a path, or a binary stream read front to back).
    Opening raises `OSError`; reading may raise one of `UNREADABLE`."""
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
        yield io.TextIOWrapper(raw, encoding=encoding)
    finally:
        if owned:
            stream.close()
