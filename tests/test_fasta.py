import gzip
import io
import json
import os
import random
import string
import subprocess
import sys
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from codonnt_eqx import FastaError, read_fasta

TEXT = ">seq1 first record\nACGT\nACG\n\n; a comment\n>seq2\r\nNNAC GT\r\n"


@pytest.mark.parametrize("compress", [False, True])
def test_reads_plain_and_gzipped(tmp_path, compress):
    path = tmp_path / "x.fa"  # gzip is detected from the bytes, not the name
    path.write_bytes(gzip.compress(TEXT.encode()) if compress else TEXT.encode())
    records = read_fasta(path)
    assert [(r.name, r.description, r.sequence) for r in records] == [
        ("seq1", "first record", "ACGTACG"),
        ("seq2", "", "NNACGT"),
    ]


@pytest.mark.parametrize(
    "text,message",
    [
        ("ACGT\n>a\nAC\n", "line 1: sequence data before the first '>' header"),
        (">a\nAC\n>\nAC\n", "line 3: empty header"),
        (">a\n>b\nAC\n", "line 1: record 'a' has no sequence"),
        ("\n\n", "no FASTA records"),
    ],
)
def test_malformed_files_name_the_line(tmp_path, text, message):
    path = tmp_path / "bad.fasta"
    path.write_text(text)
    with pytest.raises(FastaError, match=message):
        read_fasta(path)


def test_truncated_gzip_is_a_fasta_error(tmp_path):
    path = tmp_path / "cut.fa.gz"
    path.write_bytes(gzip.compress((">a\n" + "ACGT" * 1000).encode())[:40])
    with pytest.raises(FastaError, match="not a readable FASTA"):
        read_fasta(path)


# ---- one pass over the input: pipes, FIFOs and stdin lose nothing ------------------------------

names = st.text(string.ascii_letters + string.digits + "_.|-", min_size=1, max_size=12)
bases = st.text("ACGTNacgtn", min_size=1, max_size=3000)


def fasta_bytes(records, width, newline, compress) -> bytes:
    lines = []
    for name, seq in records:
        lines.append(f">{name} some description")
        lines += [seq[i : i + width] for i in range(0, len(seq), width)]
    raw = (newline.join(lines) + newline).encode()
    return gzip.compress(raw) if compress else raw


def parsed(records):
    return [(r.name, r.sequence) for r in records]


@given(
    records=st.lists(st.tuples(names, bases), min_size=1, max_size=6),
    width=st.integers(1, 120),
    newline=st.sampled_from(["\n", "\r\n"]),
    compress=st.booleans(),
)
def test_a_stream_reads_like_the_file(tmp_path_factory, records, width, newline, compress):
    data = fasta_bytes(records, width, newline, compress)
    path = tmp_path_factory.mktemp("fasta") / "x.fa"
    path.write_bytes(data)
    assert parsed(read_fasta(path)) == records
    assert parsed(read_fasta(io.BufferedReader(io.BytesIO(data)))) == records


def _big_records():
    rng = random.Random(0)  # the first record alone is larger than any sniffing buffer
    return [(f"r{i}", "".join(rng.choices("ACGT", k=n))) for i, n in enumerate((70_000, 50, 9000))]


def _write_then_close(fd: int, data: bytes) -> threading.Thread:
    def write():
        with os.fdopen(fd, "wb") as f:
            f.write(data)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("compress", [False, True])
def test_an_anonymous_pipe_loses_nothing(compress):
    records = _big_records()
    read_end, write_end = os.pipe()
    writer = _write_then_close(write_end, fasta_bytes(records, 60, "\n", compress))
    try:
        assert parsed(read_fasta(f"/dev/fd/{read_end}")) == records  # as <(...) passes it
    finally:
        os.close(read_end)
        writer.join(timeout=10)


@pytest.mark.parametrize("compress", [False, True])
def test_a_named_pipe_neither_hangs_nor_loses_data(tmp_path, compress):
    records = _big_records()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    script = (
        "import json, sys; from codonnt_eqx import read_fasta; "
        "print(json.dumps([(r.name, r.sequence) for r in read_fasta(sys.argv[1])]))"
    )
    reader = subprocess.Popen(
        [sys.executable, "-c", script, str(fifo)], stdout=subprocess.PIPE, text=True
    )
    with open(fifo, "wb") as f:  # blocks until the reader has opened its end
        f.write(fasta_bytes(records, 60, "\n", compress))
    out, _ = reader.communicate(timeout=60)
    assert [tuple(r) for r in json.loads(out)] == records


def test_byte_order_mark_and_corrupt_gzip_member(tmp_path):
    path = tmp_path / "bom.fa"
    path.write_bytes(b"\xef\xbb\xbf>a\nACGT\n")
    assert parsed(read_fasta(path)) == [("a", "ACGT")]
    data = bytearray(gzip.compress(b">a\n" + b"ACGT" * 5000))
    data[len(data) // 2] ^= 0xFF  # a flipped byte in the deflate stream
    path.write_bytes(bytes(data))
    with pytest.raises(FastaError, match="not a readable FASTA"):
        read_fasta(path)


@pytest.mark.parametrize("separator", ["\t", " ", " \t "])
def test_a_name_ends_at_any_whitespace(tmp_path, separator):
    path = tmp_path / "x.fa"
    path.write_text(f">c1{separator}some description\nACGT\n")
    (record,) = read_fasta(path)
    assert (record.name, record.description) == ("c1", "some description")
