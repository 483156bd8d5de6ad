"""A tiny end-to-end run from the command line: task file in, metrics, results and a reloadable
adapter out."""

import csv
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from codonnt_eqx import from_pretrained, save_pretrained
from codonnt_eqx.cli._main import main
from codonnt_eqx.finetune import load_finetuned, load_task
from codonnt_eqx.finetune._data import encode_split
from helpers import TOKENIZERS, V2, perturbed_model

CODONS = {"GCT": "A", "GCC": "A", "AAA": "K", "AAG": "K", "GAT": "D", "TTT": "F"}


def write_task(path, n=24, seed=0):
    rng = np.random.default_rng(seed)
    codons = list(CODONS)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sequence", "label", "split"])
        for i in range(n):
            body = [codons[j] for j in rng.integers(0, len(codons), rng.integers(4, 12))]
            w.writerow(
                [
                    "ATG" + "".join(body) + "TAA",
                    "M" + "".join(CODONS[c] for c in body),
                    ("train", "train", "val", "test")[i % 4],
                ]
            )
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    save_pretrained(perturbed_model(V2), TOKENIZERS[V2], folder)
    return folder


@pytest.mark.slow
def test_finetune_command_end_to_end(tmp_path, tiny, capsys):
    task_file = write_task(tmp_path / "residues.csv")
    out = tmp_path / "run"
    argv = [
        "finetune",
        str(task_file),
        "--task-type",
        "per-residue",
        "--checkpoint",
        str(tiny),
        "--mode",
        "ia3",
        "--epochs",
        "2",
        "--out",
        str(out),
        "--no-progress",
        "--attention",
        "reference",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "test: {" in printed and "accuracy" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["kind"] == "per-residue" and results["config"]["mode"] == "ia3"
    assert 0.0 <= results["test"]["accuracy"] <= 1.0
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["split"] for x in lines][:2] == ["train", "validation"]
    assert lines[-1]["split"] == "test" and lines[-1]["accuracy"] == results["test"]["accuracy"]

    # The saved adapter reproduces the run's test accuracy from the base checkpoint.
    model, tok = from_pretrained(tiny)
    finetuned, info = load_finetuned(out, model, tok)
    task = load_task(task_file, "per-residue")
    data = encode_split(task, task.test, tok, max_codons=None)
    logits = jax.vmap(lambda t: finetuned(t, attention="reference"))(jnp.asarray(data.tokens))
    labelled = data.targets >= 0
    accuracy = np.mean(np.asarray(logits).argmax(-1)[labelled] == data.targets[labelled])
    assert accuracy == pytest.approx(results["test"]["accuracy"])


@pytest.mark.slow
def test_probe_command_caches_representations(tmp_path, tiny, capsys):
    task_file = tmp_path / "t.csv"
    rng = np.random.default_rng(1)
    with open(task_file, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sequence", "label", "split"])
        for i in range(30):
            seq = "".join(rng.choice(list("ACGT"), 3 * int(rng.integers(3, 9))))
            w.writerow(
                [
                    seq,
                    (seq.count("G") + seq.count("C")) / len(seq),
                    ("train", "train", "val", "test")[i % 4],
                ]
            )
    cache = tmp_path / "cache"
    for head in ("linear", "mlp"):
        argv = [
            "probe",
            str(task_file),
            "--task-type",
            "regression",
            "--checkpoint",
            str(tiny),
            "--head",
            head,
            "--hidden",
            "16",
            "--epochs",
            "3",
            "--out",
            str(tmp_path / head),
            "--cache",
            str(cache),
            "--no-progress",
        ]
        assert main(argv) == 0
    assert len(list(cache.glob("*.npz"))) == 3  # one per split, reused by the second head
    results = json.loads((tmp_path / "mlp" / "results.json").read_text())
    assert results["config"]["hidden"] == 16 and "spearman" in results["test"]
    assert "spearman" in capsys.readouterr().out


def test_finetune_command_reports_bad_task_files(tmp_path, tiny, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("sequence,label,split\nATGAAATAA,MKKK,train\nATGAAA,MK,val\nATG,M,test\n")
    argv = [
        "finetune",
        str(bad),
        "--task-type",
        "per-residue",
        "--checkpoint",
        str(tiny),
        "--out",
        str(tmp_path / "o"),
    ]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "error: bad.csv:1: 3 codons but 4 residue labels" in err


def test_probe_cache_keeps_each_tasks_own_labels(tmp_path, tiny):
    from codonnt_eqx.finetune import FinetuneConfig, tokenizer_digest, weights_digest
    from codonnt_eqx.finetune._train import _probe_features

    model, tok = from_pretrained(tiny)
    write_task(tmp_path / "r.csv")
    task = load_task(tmp_path / "r.csv", "per-residue")
    data = encode_split(task, task.train, tok, max_codons=None)
    config = FinetuneConfig(batch_size=4)
    special = tuple(sorted(tok.special_ids))
    cache = (tmp_path / "c", weights_digest(model), tokenizer_digest(tok))
    first = _probe_features(model, data, task.kind, config, special, cache, tok.pad_id, print)
    # Same sequences, other labels (same labelled residues): cached features, fresh targets.
    other = type(data)(data.tokens, data.lengths, np.where(data.targets >= 0, 7, -1))
    second = _probe_features(model, other, task.kind, config, special, cache, tok.pad_id, print)
    assert len(list((tmp_path / "c").glob("*.npz"))) == 1
    np.testing.assert_array_equal(second[0], first[0])
    assert set(second[1].tolist()) == {7} and set(first[1].tolist()) != {7}
