"""`codonnt-eqx experiment tokenizations` from the command line: a tiny run writes its table,
results and plot; bad arguments fail before any training."""

import json

import numpy as np
import pytest

from codonnt_eqx.cli._main import main


def write_genes(path, n=30, seed=0):
    rng = np.random.default_rng(seed)
    with open(path, "w") as f:
        for i in range(n):
            length = 3 * int(rng.integers(60, 140))
            f.write(f">g{i}\n{''.join(rng.choice(list('ACGT'), size=length))}\n")
    return path


def write_task(path, n=24, seed=1):
    rng = np.random.default_rng(seed)
    lines = ["sequence,label,split"]
    for i in range(n):
        seq = "".join(rng.choice(list("ACGT"), size=3 * int(rng.integers(10, 30))))
        lines.append(
            f"{seq},{seq.count('G') / len(seq)},{('train', 'train', 'val', 'test')[i % 4]}"
        )
    path.write_text("\n".join(lines) + "\n")
    return path


def test_bad_task_spec_fails_before_training(tmp_path, capsys):
    fasta = write_genes(tmp_path / "cds.fa")
    argv = ["experiment", "tokenizations", str(fasta), "--out", str(tmp_path / "out")]
    assert main([*argv, "--task", f"{tmp_path / 'gc.csv'}:guess"]) == 1
    assert "TABLE:KIND" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit):
        main([*argv, "--arms", "k4"])


@pytest.mark.slow
def test_tiny_comparison_writes_table_results_and_plot(tmp_path, capsys):
    fasta = write_genes(tmp_path / "cds.fa")
    task = write_task(tmp_path / "gc.csv")
    out = tmp_path / "out"
    argv = [
        "experiment", "tokenizations", str(fasta), "--out", str(out),
        "--arms", "codon", "bpe", "--task", f"{task}:regression",
        "--steps", "2", "--batch-windows", "2", "--window-nucleotides", "60",
        "--eval-every", "2", "--eval-windows", "2", "--pll-windows", "1",
        "--probe-epochs", "2", "--warmup-steps", "1", "--bpe-vocab-size", "40",
    ]  # fmt: skip
    assert main(argv) == 0
    table = (out / "table.md").read_text()
    assert "| codon |" in table and "| bpe |" in table and "gc" in table
    rows = json.loads((out / "results.json").read_text())["arms"]
    assert [r["arm"] for r in rows] == ["codon", "bpe"]
    assert rows[0]["tokens_per_window"] == 21 and rows[0]["alignment"] == 3
    assert rows[1]["vocab_size"] <= 40
    # same nucleotides for both, different tokens
    assert rows[0]["nucleotides_seen"] == rows[1]["nucleotides_seen"] == 2 * 2 * 60
    assert (out / "plot.png").stat().st_size > 1000
    assert table in capsys.readouterr().out

    # --resume with the folder alone: the saved settings (arms, task, budget) come back; the
    # finished arms are kept, nothing is trained again.
    assert main(["experiment", "tokenizations", "--out", str(out), "--resume"]) == 0
    printed = capsys.readouterr().out
    assert "overrides" not in printed and printed.count("finished by an earlier run") == 2
    assert main(["experiment", "tokenizations", "--out", str(out)]) == 1
    assert "--resume continues it" in capsys.readouterr().err
