"""Task files: layouts, label kinds, and the codon-to-residue alignment."""

import csv
import gzip

import numpy as np
import pytest

from codonnt_eqx import KmerTokenizer
from codonnt_eqx.finetune import TaskError, load_task
from codonnt_eqx.finetune._data import encode_split
from codonnt_eqx.tokenizers._genetic_code import translate

ROWS = [
    ("ATGGCCAAATAA", "0.5", "MAK", "train"),  # 4 codons, 3 labels: terminal stop unlabelled
    ("atgaaa", "1.5", "MK", "train"),
    ("ATGCCCGGG", "2.5", "MPG", "train"),
    ("ATGTTT", "3.5", "MF", "val"),
    ("ATGGGGTGA", "4.5", "MGG", "test"),
]


def write_table(path, rows, header=("sequence", "label", "split")):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_table_with_split_column_regression(tmp_path):
    path = write_table(tmp_path / "t.csv", [(s, y, split) for s, y, _, split in ROWS])
    task = load_task(path, "regression")
    assert (len(task.train), len(task.validation), len(task.test)) == (3, 1, 1)
    assert task.train.sequences[1] == "ATGAAA"  # upper-cased
    np.testing.assert_array_equal(task.train.labels, [0.5, 1.5, 2.5])
    assert task.name == "t"


def test_per_residue_labels_and_stop_codon(tmp_path):
    rows = [(s, r, split) for s, _, r, split in ROWS[:4]] + [("ATGGGGTGA", "MG", "test")]
    task = load_task(write_table(tmp_path / "t.csv", rows), "per-residue")
    assert task.classes == ("A", "F", "G", "K", "M", "P")
    first = task.train.labels[0]
    np.testing.assert_array_equal(first, [4, 0, 3, -1])  # M A K, then the stop codon
    assert len(task.test.labels[0]) == 3 and task.test.labels[0][-1] == -1


@pytest.mark.parametrize(
    "sequence,label,message",
    [
        ("ATGGCCAAA", "MA", "3 codons but 2 residue labels"),
        ("ATGGCCAAATAA", "MA", "4 codons but 2 residue labels"),
        ("ATGGCCAAAGGG", "MAK", "4 codons but 3 residue labels"),  # extra codon is no stop
        ("ATGGCCAA", "MAK", "not a whole number of codons"),
        ("ATGNCCAAA", "MAK", "base 'N' at position 3"),
    ],
)
def test_per_residue_misalignment_fails_naming_the_row(tmp_path, sequence, label, message):
    rows = [
        ("ATGAAA", "MK", "train"),
        ("ATGCCC", "MP", "train"),
        (sequence, label, "train"),
        ("ATGTTT", "MF", "val"),
        ("ATGTTT", "MF", "test"),
    ]
    with pytest.raises(TaskError, match=message) as info:
        load_task(write_table(tmp_path / "t.csv", rows), "per-residue")
    assert "t.csv:3" in str(info.value)


def test_token_i_is_codon_i(tmp_path):
    rows = [(s, r, split) for s, _, r, split in ROWS[:4]] + [("ATGGGGTGA", "MG", "test")]
    task = load_task(write_table(tmp_path / "t.csv", rows), "per-residue")
    tok = KmerTokenizer(3)
    encoded = encode_split(task, task.train, tok, max_codons=None)
    for seq, tokens, targets, labels in zip(
        task.train.sequences, encoded.tokens, encoded.targets, task.train.labels, strict=True
    ):
        labelled = np.flatnonzero(targets >= 0)
        codons = [seq[3 * i : 3 * i + 3] for i in range(len(labels)) if labels[i] >= 0]
        assert [tok.decode(tokens[p : p + 1]) for p in labelled] == codons
        residues = [task.classes[targets[p]] for p in labelled]
        assert "".join(residues) == translate("".join(codons))


def test_tokenizer_without_one_token_per_codon_is_refused(tmp_path):
    rows = [(s, r, split) for s, _, r, split in ROWS[:4]] + [("ATGGGGTGA", "MG", "test")]
    task = load_task(write_table(tmp_path / "t.csv", rows), "per-residue")
    with pytest.raises(TaskError, match="one token per codon"):
        encode_split(task, task.train, KmerTokenizer(2), max_codons=None)


def test_files_per_split_fasta_and_carved_validation(tmp_path):
    (tmp_path / "train.fna").write_text(
        "".join(f">seq{i}|x|{'ab'[i % 2]}\nATGAAA{'C' * i}\n" for i in range(10))
    )
    with gzip.open(tmp_path / "test.fna.gz", "wt") as f:
        f.write(">t1|b\nATGCCC\n>t2 some words|a\nATGTTT\n")
    files = [tmp_path / "train.fna", tmp_path / "test.fna.gz"]
    task = load_task(files, "classification")  # the label follows the last '|'
    assert task.classes == ("a", "b")
    assert (len(task.train), len(task.validation), len(task.test)) == (9, 1, 2)
    np.testing.assert_array_equal(task.test.labels, [1, 0])
    # another field, or a pattern, read other header layouts
    assert load_task(files, "classification", label_field=-1).classes == ("a", "b")
    with pytest.raises(TaskError, match=r"test.fna.gz, line 1: header has 2 '\|'-separated"):
        load_task(files, "classification", label_field=2)
    by_pattern = load_task(files, "classification", label_pattern=r"[|]([ab])$")
    assert by_pattern.train.names[0].startswith("train.fna:")
    (tmp_path / "test.fna.gz").unlink()
    (tmp_path / "test.fna").write_text(">t1|b\nATGCCC\n>no_label\nATGTTT\n")
    with pytest.raises(TaskError, match=r"test.fna, line 3: header 'no_label' has no label"):
        load_task([tmp_path / "train.fna", tmp_path / "test.fna"], "classification")


def test_parquet_and_named_columns(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    table = pa.table(
        {"cds": [r[0] for r in ROWS], "y": list("ababa"), "fold": [r[3] for r in ROWS]}
    )
    pq.write_table(table, tmp_path / "t.parquet")
    task = load_task(tmp_path / "t.parquet", "classification", label_column="y")
    assert task.classes == ("a", "b")
    np.testing.assert_array_equal(task.train.labels, [0, 1, 0])
    assert task.test.sequences == ("ATGGGGTGA",)


def test_bad_tables_fail_clearly(tmp_path):
    with pytest.raises(TaskError, match="not a number"):
        load_task(
            write_table(
                tmp_path / "a.csv",
                [("ATG", "x", "train"), ("ATG", "1", "val"), ("ATG", "1", "test")],
            ),
            "regression",
        )
    with pytest.raises(TaskError, match="does not occur in the training split"):
        load_task(
            write_table(
                tmp_path / "b.csv",
                [
                    ("ATG", "a", "train"),
                    ("ATG", "b", "train"),
                    ("ATG", "b", "val"),
                    ("ATG", "c", "test"),
                ],
            ),
            "classification",
        )
    with pytest.raises(TaskError, match="no split column"):
        load_task(
            write_table(tmp_path / "c.csv", [("ATG", "1")], ("sequence", "label")), "regression"
        )
    with pytest.raises(TaskError, match="split 'holdout'"):
        load_task(write_table(tmp_path / "d.csv", [("ATG", "1", "holdout")]), "regression")


def test_training_batches_cover_each_example_once_with_few_pads():
    from codonnt_eqx.finetune._data import Encoded, batches

    rng = np.random.default_rng(0)
    lengths = rng.integers(2, 50, 37).astype(np.int32)
    tokens = np.ones((37, 50), np.int32)
    for i, n in enumerate(lengths):
        tokens[i, :n] = 5
    data = Encoded(tokens, lengths, np.arange(37, dtype=np.float32))
    seen, padded = [], 0
    for t, y, w in batches(data, 8, 8, 1, np.random.default_rng(1)):
        assert (
            t.shape[0] == 8 and t.shape[1] % 8 == 0 and t.shape[1] >= lengths[y.astype(int)].max()
        )
        rows = y[w > 0].astype(int)
        seen += rows.tolist()
        padded += t.shape[1] * len(rows) - lengths[rows].sum()
    assert sorted(seen) == list(range(37))
    assert padded < 0.4 * lengths.sum()  # similar lengths share a batch (random order: ~0.9)
