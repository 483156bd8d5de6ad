import gzip

import pytest

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
