"""One output policy for every command: no output replaces an input (by name, symbolic or hard
link), no run folder replaces an earlier run unless asked, and a signal leaves no partial file
and exits 130 (SIGINT) or 143 (SIGTERM)."""

import os
import signal
import subprocess
import sys
import time

import pytest

from codonnt_eqx.cli import main
from codonnt_eqx.io import OutputError, check_folder_not_input, check_output_not_input

CDS = "ATGGCCAAATTTGGGCCCTTTAAACCCGGGTAA"


@pytest.fixture
def inputs(tmp_path):
    fasta = tmp_path / "genes.fa"
    fasta.write_text(f">g1\n{CDS}\n>g2\n{CDS[::-1]}\n")
    variants = tmp_path / "variants.tsv"
    variants.write_text("sequence_name\tposition\tref\talt\ng1\t4\tG\tA\n")
    return fasta, variants


def _links(tmp_path, target):
    sym = tmp_path / "sym.tsv"
    sym.symlink_to(target)
    hard = tmp_path / "hard.tsv"
    os.link(target, hard)
    return [target, sym, hard, tmp_path / "." / target.name]


def test_score_refuses_to_write_over_any_of_its_inputs(tmp_path, inputs, capsys):
    fasta, variants = inputs
    saved = {p: p.read_bytes() for p in inputs}
    for output in [*_links(tmp_path, variants), fasta]:
        code = main(["score", str(fasta), "--variants", str(variants), "-o", str(output)])
        assert code == 1
        assert "would replace the input" in capsys.readouterr().err
    code = main(["score", str(fasta), "-o", str(fasta)])  # pseudo-log-likelihoods, same rule
    assert code == 1
    assert {p: p.read_bytes() for p in inputs} == saved


def test_embed_refuses_to_write_over_its_fasta(tmp_path, inputs, capsys):
    fasta, _ = inputs
    link = tmp_path / "genes.npz"
    link.symlink_to(fasta)
    before = fasta.read_bytes()
    assert main(["embed", str(fasta), "-o", str(link)]) == 1
    assert "would replace the input" in capsys.readouterr().err
    assert fasta.read_bytes() == before


def test_the_policy_functions_see_through_links_and_folders(tmp_path):
    a = tmp_path / "a.txt"
    a.write_text("x")
    check_output_not_input(tmp_path / "b.txt", [a, None, "-"])  # another file is fine
    for same in _links(tmp_path, a):
        with pytest.raises(OutputError):
            check_output_not_input(same, [a])
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("{}\n")
    check_folder_not_input(run, [a], writes=["metrics.jsonl"])
    with pytest.raises(OutputError, match="replace its input"):
        check_folder_not_input(run, [run / "metrics.jsonl"], writes=["metrics.jsonl"])
    with pytest.raises(OutputError, match="replace its input"):
        check_folder_not_input(run, [run], writes=["metrics.jsonl"])


def test_finetune_refuses_an_earlier_run_and_its_own_inputs(tmp_path, capsys):
    task = tmp_path / "task"
    task.mkdir()
    out = tmp_path / "run"
    out.mkdir()
    (out / "results.json").write_text('{"earlier": true}\n')
    argv = ["probe", str(task), "--task-type", "regression", "--no-progress"]
    assert main([*argv, "--out", str(out)]) == 1
    assert "already holds a run" in capsys.readouterr().err
    assert (out / "results.json").read_text() == '{"earlier": true}\n'
    # a run folder that would replace its own --init-head run or task files
    assert main([*argv, "--out", str(out), "--init-head", str(out), "--overwrite"]) == 1
    assert "replace its input" in capsys.readouterr().err
    (task / "results.json").write_text("label table\n")
    assert main(["probe", str(task / "results.json"), "--task-type", "regression",
                 "--out", str(task)]) == 1  # fmt: skip
    assert (task / "results.json").read_text() == "label table\n"


def test_score_refuses_two_reference_records_of_one_name(tmp_path, inputs, capsys):
    fasta, variants = inputs
    fasta.write_text(f">g1\n{CDS}\n>g2\n{CDS}\n>g1 again\n{CDS[::-1]}\n")
    out = tmp_path / "scores.tsv"
    assert main(["score", str(fasta), "--variants", str(variants), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "'g1' appears twice (lines 1 and 5)" in err
    assert not out.exists()


def _big_fasta(path, records=400, length=3000):
    import numpy as np

    rng = np.random.default_rng(0)
    with open(path, "w") as f:
        for i in range(records):
            f.write(f">r{i}\n{''.join(rng.choice(list('ACGT'), size=length))}\n")


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_mid_embed_leaves_no_partial_file_and_exits_128_plus_it(tmp_path, signum, status):
    fasta = tmp_path / "big.fa"
    _big_fasta(fasta)
    out = tmp_path / "out.npz"
    out.write_bytes(b"an earlier result")
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "codonnt_eqx", "embed", str(fasta), "-o", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    deadline = time.time() + 120
    # wait until the temporary output exists: the command is mid-write
    while time.time() < deadline and not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]:
        if proc.poll() is not None:
            pytest.fail(f"finished before the signal: {proc.communicate()}")
        time.sleep(0.05)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == status, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.fa", "out.npz"], err
    assert out.read_bytes() == b"an earlier result"
