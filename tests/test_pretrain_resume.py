"""`codonnt-eqx pretrain --resume` restores the run's settings from its folder."""

import json

import equinox as eqx
import jax
import numpy as np
import pytest

from codonnt_eqx import from_pretrained
from codonnt_eqx.cli._main import main

# Every recipe value differs from its default, so a setting that is not restored shows.
OPTIONS = (
    "--layers 2 --width 32 --heads 4 --ffn 48 --seq-length 24 --tokens-per-batch 96 "
    "--micro-batch 2 --warmup-steps 2 --init-lr 1e-3 --peak-lr 3e-3 --seed 7 --dtype float32 "
    "--log-every 1 --eval-every 2 --eval-windows 4 --checkpoint-every 2 --keep 2 "
    "--validation-fraction 0.05"
).split()


@pytest.fixture(scope="module")
def fasta(tmp_path_factory):
    rng = np.random.default_rng(3)
    path = tmp_path_factory.mktemp("genome") / "g.fa"
    path.write_text("".join(f">{n}\n{''.join(rng.choice(list('ACGT'), 4000))}\n" for n in "ab"))
    return path


def weights(folder):
    model, _ = from_pretrained(folder / "model")
    return [np.asarray(x) for x in jax.tree.leaves(eqx.filter(model, eqx.is_array))]


def test_a_run_resumed_with_only_its_folder_matches_an_uninterrupted_one(
    tmp_path, fasta, capsys, monkeypatch
):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert main(["pretrain", str(fasta), "--out", str(whole), *OPTIONS, "--steps", "4"]) == 0
    assert main(["pretrain", str(fasta), "--out", str(cut), *OPTIONS, "--steps", "2"]) == 0
    saved = json.loads((cut / "settings.json").read_text())["settings"]
    assert saved["seed"] == 7 and saved["fasta"] == [str(fasta)] and saved["steps"] == 2
    capsys.readouterr()

    monkeypatch.chdir(tmp_path)  # the saved FASTA path does not depend on where one stands
    assert main(["pretrain", "--out", str(cut), "--resume", "--steps", "4"]) == 0
    printed = capsys.readouterr().out
    assert "--steps 4 overrides the run's 2" in printed
    assert "overrides" not in printed.replace("--steps 4 overrides", "")  # nothing else
    for a, b in zip(weights(whole), weights(cut), strict=True):
        np.testing.assert_array_equal(a, b)
    assert json.loads((cut / "settings.json").read_text())["settings"]["steps"] == 4

    # An override the checkpoint cannot take is refused and leaves the settings as they were.
    before = (cut / "settings.json").read_text()
    assert main(["pretrain", "--out", str(cut), "--resume", "--steps", "6", "--width", "64"]) == 1
    assert "--width 64 overrides the run's 32" in capsys.readouterr().out
    assert (cut / "settings.json").read_text() == before


def test_a_fresh_run_into_a_used_folder_and_a_resume_without_inputs_are_refused(
    tmp_path, fasta, capsys
):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "settings.json").write_text("{}")
    assert main(["pretrain", str(fasta), "--out", str(tmp_path / "used"), *OPTIONS]) == 1
    assert "already holds a run (settings.json); --resume continues it" in capsys.readouterr().err

    # A folder without saved settings (an older run, the Python API) needs its inputs again.
    assert main(["pretrain", "--out", str(tmp_path / "empty"), "--resume", *OPTIONS]) == 1
    assert "give the FASTA files" in capsys.readouterr().err

    # A damaged settings file is named, not silently replaced by defaults.
    assert main(["pretrain", "--out", str(tmp_path / "used"), "--resume"]) == 1
    assert "settings.json: not a codonnt-eqx settings file" in capsys.readouterr().err


def test_a_flag_is_restored_and_a_value_given_again_is_no_override(tmp_path, fasta, capsys):
    out = tmp_path / "run"
    args = ["pretrain", str(fasta), "--out", str(out), *OPTIONS, "--steps", "2", "--remat"]
    assert main(args) == 0
    assert json.loads((out / "settings.json").read_text())["settings"]["remat"] is True
    capsys.readouterr()
    # remat is part of what a checkpoint must match: resuming works only if it is restored.
    assert main(["pretrain", "--out", str(out), "--resume", "--steps", "3", "--seed", "7"]) == 0
    printed = capsys.readouterr().out
    assert "--steps 3 overrides" in printed and "--seed" not in printed
    settings = json.loads((out / "settings.json").read_text())["settings"]
    assert settings["remat"] is True and settings["steps"] == 3
