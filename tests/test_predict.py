"""Predictions of fine-tuned runs: `Predictor` and `codonnt-eqx predict` against the
`Finetuned` module called directly, for every task kind and mode, with labels carried over,
invalid records skipped, and the errors a user meets."""

import csv

import jax.numpy as jnp
import numpy as np
import pyarrow.parquet as pq
import pytest

from codonnt_eqx import from_pretrained, save_pretrained
from codonnt_eqx.cli._main import main
from codonnt_eqx.finetune import (
    AdapterError,
    FinetuneConfig,
    Predictor,
    finetune,
    load_finetuned,
    load_task,
)
from helpers import TOKENIZERS, V2, perturbed_model
from test_finetune_run import write_task

RNG = np.random.default_rng(7)


def _dna(codons: int) -> str:
    return "".join(RNG.choice(list("ACGT"), 3 * codons))


def write_labelled(path, kind: str, n: int = 24):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name", "sequence", "label", "split"])
        for i in range(n):
            seq = _dna(int(RNG.integers(3, 12)))
            gc = (seq.count("G") + seq.count("C")) / len(seq)
            # Classes by index so that every split of any size holds all three.
            label = f"{gc:.4f}" if kind == "regression" else ("low", "mid", "high")[i % 3]
            w.writerow([f"s{i}", seq, label, ("train", "train", "val", "test")[i % 4]])
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    save_pretrained(perturbed_model(V2), TOKENIZERS[V2], folder)
    return folder


def _reference(folder, tiny, seqs):
    """The run's outputs from `load_finetuned` + the module itself, one sequence at a time."""
    model, tok = from_pretrained(tiny)
    finetuned, info = load_finetuned(folder, model, tok)
    outs = [np.asarray(finetuned(jnp.asarray(tok.encode(s)))) for s in seqs]
    return outs, info


def _read_tsv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


@pytest.mark.parametrize(("kind", "mode"), [("regression", "probe"), ("classification", "lora")])
def test_predict_command_matches_the_module(tmp_path, tiny, capsys, kind, mode):
    task_file = write_labelled(tmp_path / "task.csv", kind)
    run = tmp_path / "run"
    argv = ["finetune", str(task_file), "--task-type", kind, "--checkpoint", str(tiny)]
    argv += ["--mode", mode, "--epochs", "2", "--out", str(run), "--no-progress"]
    assert main(argv) == 0
    # The base is found from the run's record; the table's names and labels are kept.
    out = tmp_path / "pred.tsv"
    assert main(["predict", str(run), str(task_file), "-o", str(out)]) == 0
    rows = _read_tsv(out)
    with open(task_file, newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["name"] for r in rows] == [t["name"] for t in table]
    assert [r["label"] for r in rows] == [t["label"] for t in table]
    outs, info = _reference(run, tiny, [t["sequence"] for t in table])
    if kind == "regression":
        want = [o[0] * info["label_std"] + info["label_mean"] for o in outs]
        got = [float(r["prediction"]) for r in rows]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
        assert not any(k.startswith("p_") for k in rows[0])
    else:
        classes = info["task"]["classes"]
        probs = np.array([[float(r[f"p_{c}"]) for c in classes] for r in rows])
        logits = np.array(outs, np.float64)
        want = np.exp(logits - logits.max(1, keepdims=True))
        want /= want.sum(1, keepdims=True)
        np.testing.assert_allclose(probs, want, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
        assert [r["prediction"] for r in rows] == [classes[i] for i in logits.argmax(1)]


def test_predictor_per_residue_rows_and_parquet(tmp_path, tiny):
    task_file = write_task(tmp_path / "residues.csv")
    model, tok = from_pretrained(tiny)
    task = load_task(task_file, "per-residue")
    run = tmp_path / "run"
    finetune(model, tok, task, FinetuneConfig(mode="ia3", epochs=1), out=run, progress=False)
    with open(task_file, newline="") as f:
        seqs = [r["sequence"] for r in csv.DictReader(f)]
    predictor = Predictor.load(run, model, tok)
    assert predictor.kind == "per-residue" and predictor.classes == task.classes
    predictions = list(predictor(seqs))
    outs, _ = _reference(run, tiny, seqs)
    for p, out, seq in zip(predictions, outs, seqs, strict=True):
        body = out[1:]  # the <cls> position is not a codon
        assert len(p.prediction) == len(seq) // 3 == len(body)
        assert list(p.prediction) == [task.classes[i] for i in body.argmax(-1)]
        np.testing.assert_array_equal(p.spans[:, 0], np.arange(0, len(seq), 3))
    fasta = tmp_path / "in.fa"
    fasta.write_text("".join(f">g{i}\n{s.lower()}\n" for i, s in enumerate(seqs[:3])))
    out = tmp_path / "pred.parquet"
    # An API run records no base: the command needs --checkpoint.
    assert main(["predict", str(run), str(fasta), "-o", str(out)]) == 1
    assert not out.exists()
    assert main(["predict", str(run), str(fasta), "-o", str(out), "--checkpoint", str(tiny)]) == 0
    table = pq.read_table(out).to_pydict()
    assert table["name"] == [f"g{i}" for i in range(3) for _ in range(len(seqs[i]) // 3)]
    assert table["start"][:2] == [0, 3] and table["end"][:2] == [3, 6]
    first = [task.classes[i] for i in outs[0][1:].argmax(-1)]
    assert table["prediction"][: len(first)] == first


def test_full_finetune_predicts_without_a_base(tmp_path, tiny, capsys):
    task_file = write_labelled(tmp_path / "t.csv", "regression", n=12)
    run = tmp_path / "full"
    argv = ["finetune", str(task_file), "--task-type", "regression", "--checkpoint", str(tiny)]
    argv += ["--mode", "full", "--epochs", "1", "--out", str(run), "--no-progress"]
    assert main(argv) == 0
    fasta = tmp_path / "x.fa"
    fasta.write_text(">a\nATGGCCAAATAA\n>bad\nATGXXXTAA\n>b\nATGTTTGATTAA\n")
    capsys.readouterr()
    # A model folder it was not trained on is not used: full runs carry their model.
    assert main(["predict", str(run), str(fasta), "--skip-invalid"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert lines[0] == "name\tprediction" and [x.split("\t")[0] for x in lines[1:]] == ["a", "b"]
    assert "skipped 1 record" in captured.err and "bad" in captured.err
    predictor = Predictor.load(run)
    want = [p.prediction for p in predictor(["ATGGCCAAATAA", "ATGTTTGATTAA"])]
    np.testing.assert_allclose([float(x.split("\t")[1]) for x in lines[1:]], want, rtol=1e-5)


def test_skipped_records_keep_labels_in_step(tmp_path, tiny):
    task_file = write_labelled(tmp_path / "t.csv", "classification", n=12)
    run = tmp_path / "run"
    argv = ["probe", str(task_file), "--task-type", "classification", "--checkpoint", str(tiny)]
    assert main([*argv, "--epochs", "1", "--out", str(run), "--no-progress"]) == 0
    table = tmp_path / "mixed.tsv"
    table.write_text("id\tcds\ty\none\tATGGCC\tA\ntwo\tATGQQQ\tB\nthree\tATGAAA\tC\nfour\tAAA\tD\n")
    out = tmp_path / "p.csv"
    assert main(["predict", str(run), str(table), "-o", str(out), "--skip-invalid"]) == 0
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["name"], r["label"]) for r in rows] == [("one", "A"), ("three", "C"), ("four", "D")]
    # Without --skip-invalid the bad record stops the run and no file is left.
    out.unlink()
    assert main(["predict", str(run), str(table), "-o", str(out)]) == 1
    assert not out.exists()


def test_predict_refuses_what_it_cannot_use(tmp_path, tiny, capsys):
    fasta = tmp_path / "x.fa"
    fasta.write_text(">a\nATGGCC\n")
    assert main(["predict", str(tmp_path), str(fasta)]) == 1
    assert "not a fine-tuning run folder" in capsys.readouterr().err
    with pytest.raises(AdapterError, match="not a fine-tuning run folder"):
        Predictor.load(tmp_path)
    assert main(["predict", str(tmp_path), str(fasta), "-o", str(tmp_path / "x.xlsx")]) == 1
    assert "unknown output format" in capsys.readouterr().err


def test_embed_accepts_a_finetuned_folder(tmp_path, tiny):
    task_file = write_labelled(tmp_path / "t.csv", "regression", n=12)
    run = tmp_path / "run"
    argv = ["finetune", str(task_file), "--task-type", "regression", "--checkpoint", str(tiny)]
    assert main([*argv, "--mode", "ia3", "--epochs", "1", "--out", str(run), "--no-progress"]) == 0
    fasta = tmp_path / "x.fa"
    fasta.write_text(">a\nATGGCCAAATAA\n")
    out = tmp_path / "e.npz"
    assert main(["embed", str(fasta), "--checkpoint", str(run), "-o", str(out)]) == 0
    model, tok = from_pretrained(tiny)
    finetuned, _ = load_finetuned(run, model, tok)
    tokens = jnp.asarray(tok.encode("ATGGCCAAATAA"))
    want = np.asarray(finetuned.model(tokens).embeddings)[1:].mean(0)
    np.testing.assert_allclose(np.load(out)["embeddings"][0], want, rtol=1e-4, atol=1e-5)
    base = np.asarray(model(tokens).embeddings)[1:].mean(0)
    assert not np.array_equal(want, base)  # the adapters were applied
