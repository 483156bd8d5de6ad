"""InstaDeep's true-CDS protein tasks as published (`InstaDeepAI/true-cds-protein-tasks`): one
folder per task, `train.fna` / `val.fna` / `test.fna` with the label after the header's last
`|`; secondary structure has a training file, no validation file, several named test sets, and
8 DSSP classes per residue. A small synthetic copy of that layout is written here."""

import json

import numpy as np
import pytest

from codonnt_eqx import save_pretrained
from codonnt_eqx.cli import main
from codonnt_eqx.finetune import TaskError, load_task
from codonnt_eqx.tokenizers import CODON_TABLE
from helpers import TOKENIZERS, V2, perturbed_model

DSSP8 = "HBEGITSC"
SENSE = sorted(c for c, aa in CODON_TABLE.items() if aa != "*")


def _cds(rng, codons: int, stop: bool) -> str:
    body = "".join(rng.choice(SENSE, size=codons))
    return "ATG" + body[3:] + ("TAA" if stop else "")


def write_ssp(folder, seed=0):
    """train.fna and three named test sets; per-residue DSSP8 labels; some CDSs end with a
    stop codon (one codon more than labels), some do not."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    expected = {}
    for name, count in (("train", 30), ("cb513", 5), ("ts115", 4), ("casp12", 3)):
        lines, labels = [], []
        for i in range(count):
            n = int(rng.integers(6, 15))
            label = "".join(rng.choice(list(DSSP8), size=n))
            lines.append(f">{name}_{i}|{label}\n{_cds(rng, n, stop=bool(i % 2))}\n")
            labels.append(label)
        (folder / f"{name}.fna").write_text("".join(lines))
        expected[name] = labels
    (folder / "README.md").write_text("not data\n")
    return expected


def write_regression(folder, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for split, count in (("train", 24), ("val", 6), ("test", 6)):
        lines = []
        for i in range(count):
            seq = _cds(rng, int(rng.integers(5, 12)), stop=True)
            label = seq.count("G") / len(seq) * 100
            lines.append(f">P{i:05d}|{split} protein {i}|{label:.3f}\n{seq}\n")
        (folder / f"{split}.fna").write_text("".join(lines))


def test_the_ssp_layout_loads_with_8_classes_and_its_test_sets_apart(tmp_path):
    expected = write_ssp(tmp_path / "ssp")
    task = load_task(tmp_path / "ssp", "per-residue")
    assert task.name == "ssp" and task.classes == tuple(sorted(DSSP8))
    assert task.num_outputs == 8
    assert [name for name, _ in task.extra_tests] == ["casp12", "cb513", "ts115"]
    sizes = {name: len(split) for name, split in task.extra_tests}
    assert sizes == {"cb513": 5, "ts115": 4, "casp12": 3}
    assert len(task.test) == 12  # no test.fna: the named sets together
    assert len(task.train) + len(task.validation) == 30 and len(task.validation) == 3
    # per-residue labels are aligned to codons: class index per codon, -1 for the stop codon
    cb513 = dict(task.extra_tests)["cb513"]
    for i, (seq, labels) in enumerate(zip(cb513.sequences, cb513.labels, strict=True)):
        text = expected["cb513"][i]
        assert len(labels) == len(seq) // 3
        assert "".join(task.classes[j] for j in labels[: len(text)]) == text
        assert (labels[len(text) :] == -1).all() and len(labels) - len(text) == i % 2
    assert task.split("test:ts115") is dict(task.extra_tests)["ts115"]
    assert "test:casp12" in task.describe()


def test_a_regression_task_reads_the_label_after_the_last_bar(tmp_path):
    write_regression(tmp_path / "fluorescence")
    task = load_task(tmp_path / "fluorescence", "regression")
    assert (len(task.train), len(task.validation), len(task.test)) == (24, 6, 6)
    assert task.extra_tests == ()
    first = (tmp_path / "fluorescence" / "train.fna").read_text().splitlines()[0]
    assert task.train.labels[0] == pytest.approx(float(first.rsplit("|", 1)[1]))
    assert task.train.names[0] == "train.fna:1"
    # another field of the header, by index or by pattern
    with pytest.raises(TaskError, match=r"train.fna:1: regression label 'P00000'"):
        load_task(tmp_path / "fluorescence", "regression", label_field=0)
    by_pattern = load_task(tmp_path / "fluorescence", "regression", label_pattern=r"\|([\d.]+)$")
    np.testing.assert_array_equal(by_pattern.train.labels, task.train.labels)


def test_a_header_without_a_label_names_the_file_and_line(tmp_path):
    write_regression(tmp_path / "t")
    val = tmp_path / "t" / "val.fna"
    lines = val.read_text().splitlines()
    lines[4] = ">P99999 no bar here"
    val.write_text("\n".join(lines) + "\n")
    with pytest.raises(TaskError, match=r"val.fna, line 5: header 'P99999 no bar here' has no"):
        load_task(tmp_path / "t", "regression")


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ([1e39, 1.0], "not finite in float32"),  # finite in float64, inf in float32
        ([2.5, 2.5], "constant labels"),
        ([1e8, 1e8 + 1e-3], "constant labels"),  # distinct in float64, equal in float32
    ],
)
def test_labels_are_checked_in_the_training_dtype(tmp_path, labels, message):
    write_regression(tmp_path / "t")
    train = tmp_path / "t" / "train.fna"
    text = train.read_text().splitlines()
    for i in range(0, len(text), 2):
        text[i] = f"{text[i].rsplit('|', 1)[0]}|{labels[(i // 2) % len(labels)]!r}"
    train.write_text("\n".join(text) + "\n")
    with pytest.raises(TaskError, match=message):
        load_task(tmp_path / "t", "regression")


def test_a_single_residue_class_is_a_degenerate_task(tmp_path):
    folder = tmp_path / "ssp"
    folder.mkdir()
    for split in ("train", "test"):
        (folder / f"{split}.fna").write_text(
            "".join(f">{split}{i}|CCCC\nATGAAACCCGGG\n" for i in range(12))
        )
    with pytest.raises(TaskError, match="need 2\\+ classes"):
        load_task(folder, "per-residue")


def test_a_folder_with_two_files_for_one_split_or_no_training_file_is_refused(tmp_path):
    write_regression(tmp_path / "t")
    (tmp_path / "t" / "train.csv").write_text("sequence,label\nATG,1\n")
    with pytest.raises(TaskError, match="two files for the train split"):
        load_task(tmp_path / "t", "regression")
    (tmp_path / "t" / "train.csv").unlink()
    (tmp_path / "t" / "train.fna").unlink()
    with pytest.raises(TaskError, match="no training file"):
        load_task(tmp_path / "t", "regression")


@pytest.mark.slow
def test_probe_takes_the_task_folder_and_reports_each_test_set(tmp_path, capsys):
    model_dir = tmp_path / "model"
    save_pretrained(perturbed_model(V2), TOKENIZERS[V2], model_dir)
    write_ssp(tmp_path / "ssp")
    out = tmp_path / "run"
    argv = ["probe", str(tmp_path / "ssp"), "--task-type", "per-residue", "--checkpoint",
            str(model_dir), "--epochs", "2", "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    for name in ("cb513", "ts115", "casp12"):
        assert f"test set {name}:" in printed
    results = json.loads((out / "results.json").read_text())
    assert set(results["extra_tests"]) == {"cb513", "ts115", "casp12"}
    assert results["sizes"]["test:cb513"] == 5
    assert all(0 <= m["accuracy"] <= 1 for m in results["extra_tests"].values())
    splits = [
        json.loads(line)["split"] for line in (out / "metrics.jsonl").read_text().splitlines()
    ]
    assert {"test:cb513", "test:ts115", "test:casp12"} <= set(splits)
    assert main(argv) == 1  # a second run into the same folder is refused
    assert "already holds a run" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0
