"""The training step and loop: accumulation, resume, signals, failures, devices, processes."""

import dataclasses
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest

from codonnt_eqx import KmerTokenizer, ModelConfig, NucleotideTransformer, from_pretrained
from codonnt_eqx.cli._main import main
from codonnt_eqx.training import (
    GenomeCorpus,
    MaskedLM,
    PretrainConfig,
    TrainingCheckpointError,
    TrainingError,
    make_train_step,
    pretrain,
    read_metrics,
)

MODEL = ModelConfig(vocab_size=75, embed_dim=32, num_layers=2, num_heads=4, ffn_dim=48)
TOKENIZER = KmerTokenizer(3, uppercase=True)
RECIPE = PretrainConfig(
    seq_length=24,
    tokens_per_batch=24 * 8,
    micro_batch_size=4,
    steps=6,
    warmup_steps=2,
    init_lr=1e-3,
    peak_lr=3e-3,
    dtype="float32",
    log_every=1,
    eval_every=3,
    eval_windows=8,
    checkpoint_every=3,
)
WORKER = pathlib.Path(__file__).parent / "training_worker.py"


@pytest.fixture(scope="module")
def fasta(tmp_path_factory):
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("genome") / "g.fa"
    records = [("a", 6000), ("b", 3000)]
    path.write_text(
        "".join(f">{n}\n{''.join(rng.choice(list('ACGT'), size=s))}\n" for n, s in records)
    )
    return path


@pytest.fixture(scope="module")
def corpus(fasta):
    return GenomeCorpus.from_fasta([fasta], validation_fraction=0.05)


def arrays(model):
    return [np.asarray(x) for x in jax.tree.leaves(eqx.filter(model, eqx.is_array))]


def train_lines(run: pathlib.Path):
    """metrics.jsonl without the timing, which differs from run to run."""
    return [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in read_metrics(run)]


def test_accumulated_micro_batches_give_the_whole_batch_gradient(corpus):
    model = NucleotideTransformer(MODEL, key=jr.key(0))
    optimizer = optax.sgd(1.0)  # the update is the gradient itself
    step = make_train_step(optimizer, MaskedLM.for_tokenizer(TOKENIZER), dtype=jnp.float32)
    tokens = corpus.batch(0, 0, 8, window_tokens=24, tokenizer=TOKENIZER)
    results = []
    for accumulation in (1, 2, 4):
        m = jax.tree.map(jnp.copy, model)
        state = optimizer.init(eqx.filter(m, eqx.is_array))
        shaped = jnp.asarray(tokens.reshape(accumulation, -1, 24))
        new, _, metrics = step(m, state, shaped, jr.key(1))
        results.append((arrays(new), float(metrics.loss.loss_sum), int(metrics.loss.num_selected)))
    (ref, loss, count), *others = results
    assert count > 0
    for got, got_loss, got_count in others:
        assert got_count == count  # the same examples get the same masks, however split
        np.testing.assert_allclose(got_loss, loss, rtol=1e-6)
        for a, b in zip(got, ref, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_a_step_compiled_ahead_of_time_from_shapes_matches_the_jitted_step(corpus):
    from codonnt_eqx.accelerators import abstract

    model = NucleotideTransformer(MODEL, key=jr.key(0))
    optimizer = optax.adam(1e-3)
    state = optimizer.init(eqx.filter(model, eqx.is_array))
    step = make_train_step(optimizer, MaskedLM.for_tokenizer(TOKENIZER), dtype=jnp.float32)
    tokens = jnp.asarray(corpus.batch(0, 0, 8, window_tokens=24, tokenizer=TOKENIZER)[None])
    # The step donates the model and optimizer state: each call gets its own copy.
    fresh = lambda tree: jax.tree.map(lambda x: jnp.copy(x) if eqx.is_array(x) else x, tree)  # noqa: E731
    compiled = step.compile(abstract(model), abstract(state), abstract(tokens), jr.key(1))
    got = compiled(fresh(model), fresh(state), tokens, jr.key(1))
    want = step(fresh(model), fresh(state), tokens, jr.key(1))
    assert isinstance(got[0], NucleotideTransformer)
    for a, b in zip(arrays(got[0]), arrays(want[0]), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert float(got[2].loss.loss_sum) == pytest.approx(float(want[2].loss.loss_sum), rel=1e-6)
    other = NucleotideTransformer(dataclasses.replace(MODEL, token_dropout=True), key=jr.key(0))
    with pytest.raises(ValueError, match="static arguments"):
        compiled(fresh(other), fresh(state), tokens, jr.key(1))
    with pytest.raises(TypeError, match="compiled already"):
        compiled.compile(fresh(model), fresh(state), tokens, jr.key(1))


def test_training_lowers_the_loss_on_a_repeated_batch(corpus):
    model = NucleotideTransformer(MODEL, key=jr.key(0))
    optimizer = optax.adam(3e-3)
    state = optimizer.init(eqx.filter(model, eqx.is_array))
    step = make_train_step(optimizer, MaskedLM.for_tokenizer(TOKENIZER), dtype=jnp.bfloat16)
    tokens = jnp.asarray(corpus.batch(0, 0, 8, window_tokens=24, tokenizer=TOKENIZER)[None])
    losses = []
    for _ in range(30):
        model, state, metrics = step(model, state, tokens, jr.key(1))  # the same masks each time
        losses.append(float(metrics.loss.loss_sum / metrics.loss.num_selected))
    assert losses[-1] < 0.5 * losses[0], losses


def test_resume_after_a_signal_is_bit_exact(tmp_path, corpus):
    straight = pretrain(MODEL, TOKENIZER, corpus, tmp_path / "straight", RECIPE, progress=False)
    assert (straight.step, straight.stopped) == (6, "done")

    def stop_at_first_validation(message: str) -> None:
        if "validation" in message:
            os.kill(os.getpid(), signal.SIGTERM)

    cut = pretrain(
        MODEL,
        TOKENIZER,
        corpus,
        tmp_path / "cut",
        RECIPE,
        progress=False,
        log=stop_at_first_validation,
    )
    assert (cut.step, cut.stopped) == (3, "signal")
    assert not (tmp_path / "cut" / "model").exists()
    with pytest.raises(ValueError, match="already has checkpoints"):
        pretrain(MODEL, TOKENIZER, corpus, tmp_path / "cut", RECIPE, progress=False)
    resumed = pretrain(
        MODEL, TOKENIZER, corpus, tmp_path / "cut", RECIPE, resume=True, progress=False
    )
    assert resumed.step == 6
    for a, b in zip(arrays(resumed.model), arrays(straight.model), strict=True):
        np.testing.assert_array_equal(a, b)
    assert train_lines(tmp_path / "cut") == train_lines(tmp_path / "straight")
    # The final model is written in the Hugging Face layout and loads back.
    loaded, tokenizer = from_pretrained(tmp_path / "cut" / "model")
    assert tokenizer.vocabulary == TOKENIZER.vocabulary
    for a, b in zip(arrays(loaded), arrays(straight.model), strict=True):
        np.testing.assert_array_equal(a, b)


def test_plot_command_draws_the_metrics(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    lines = [
        {"step": 1, "split": "train", "tokens_seen": 100, "loss": 4.0, "bits_per_nucleotide": 2.1},
        {"step": 2, "split": "train", "tokens_seen": 200, "loss": 3.5, "bits_per_nucleotide": 1.9},
        {"step": 2, "split": "validation", "loss": 3.7, "bits_per_nucleotide": 1.95},
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert main(["plot", str(tmp_path)]) == 0
    assert (tmp_path / "metrics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "metrics.jsonl").write_text("{not json\n")
    assert main(["plot", str(tmp_path)]) == 1
    assert "line 1: not JSON" in capsys.readouterr().err


def test_checkpoints_of_another_run_are_refused(tmp_path, corpus):
    short = RECIPE.replace(steps=3)
    pretrain(MODEL, TOKENIZER, corpus, tmp_path, short, progress=False)
    for model, recipe, key in (
        (MODEL.replace(num_layers=3), short.replace(steps=6), "model.num_layers"),
        (MODEL, short.replace(steps=6, peak_lr=1e-2), "recipe.peak_lr"),
    ):
        with pytest.raises(TrainingCheckpointError, match=f"different run.*{key}"):
            pretrain(model, TOKENIZER, corpus, tmp_path, recipe, resume=True, progress=False)


def test_a_non_finite_loss_stops_the_run_naming_the_step(tmp_path, corpus):
    explode = RECIPE.replace(init_lr=1e30, peak_lr=1e30, checkpoint_every=100)
    with pytest.raises(TrainingError, match=r"non-finite loss or gradient by step \d"):
        pretrain(MODEL, TOKENIZER, corpus, tmp_path, explode, progress=False)
    assert not (tmp_path / "model").exists()
    # No checkpoint of the diverged state was written.
    assert not any((tmp_path / "checkpoints").glob("[0-9]*"))
    # Its metrics stay: a new run there is refused without resume (which starts it over).
    with pytest.raises(ValueError, match="already holds a run \\(metrics.jsonl\\)"):
        pretrain(MODEL, TOKENIZER, corpus, tmp_path, explode, progress=False)


def test_a_failed_save_names_the_last_good_checkpoint(tmp_path, corpus, monkeypatch):
    from codonnt_eqx.training import TrainingCheckpoints

    original = TrainingCheckpoints.save

    def disk_full_after_first(self, step, state, extra=None):
        if step > 3:
            raise OSError(28, "No space left on device")
        original(self, step, state, extra)

    monkeypatch.setattr(TrainingCheckpoints, "save", disk_full_after_first)
    with pytest.raises(
        TrainingError, match="step 6 .*No space left.*last good checkpoint is step 3"
    ):
        pretrain(MODEL, TOKENIZER, corpus, tmp_path, RECIPE, progress=False)


def test_bad_settings_are_clear_errors(tmp_path, corpus):
    with pytest.raises(ValueError, match="does not divide the batch"):
        RECIPE.replace(micro_batch_size=3)
    with pytest.raises(ValueError, match="vocabulary"):
        pretrain(MODEL.replace(vocab_size=80), TOKENIZER, corpus, tmp_path, RECIPE)
    learned = MODEL.replace(positional_embedding="learned", max_positions=16)
    with pytest.raises(ValueError, match="max_positions"):
        pretrain(learned, TOKENIZER, corpus, tmp_path, RECIPE)


def _run_worker(*args, env=None, timeout=600):
    run = subprocess.run(
        [sys.executable, str(WORKER), *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        cwd=WORKER.parent,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout


@pytest.mark.slow
def test_eight_devices_data_parallel_and_fsdp_match_one_device(fasta):
    out = _run_worker(
        "devices", fasta, env={"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    )
    result = json.loads(out.strip().splitlines()[-1])
    assert result["devices"] == 8
    one = result["one"]["losses"]
    for layout in ("data", "fsdp"):
        np.testing.assert_allclose(result[layout]["losses"], one, rtol=1e-5)
    assert any("fsdp" in spec for spec in result["fsdp"]["shardings"])  # really sharded
    assert result["data"]["shardings"] == ["P()"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_train_like_one(tmp_path, fasta):
    _run_worker("process", fasta, tmp_path / "one", 0, 1, 0)
    port = _free_port()
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                str(WORKER),
                *map(str, ("process", fasta, tmp_path / "two", i, 2, port)),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=WORKER.parent,
        )
        for i in (0, 1)
    ]
    for w in workers:
        _, err = w.communicate(timeout=600)
        assert w.returncode == 0, err[-3000:]
    one, two = read_metrics(tmp_path / "one"), read_metrics(tmp_path / "two")
    assert [(r["step"], r["split"]) for r in one] == [(r["step"], r["split"]) for r in two]
    # Same examples and masks; only the order of float reductions differs.
    assert one[0]["loss"] == pytest.approx(two[0]["loss"], rel=1e-6)
    for a, b in zip(one, two, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=2e-3)


@pytest.mark.slow
def test_a_corrupt_checkpoint_names_itself_and_the_last_good_one(tmp_path, corpus):
    cut = RECIPE.replace(steps=6, checkpoint_every=3)
    pretrain(MODEL, TOKENIZER, corpus, tmp_path, cut, progress=False, log=lambda m: None)
    latest = tmp_path / "checkpoints" / "6"
    damaged = 0
    for file in latest.rglob("*"):
        if file.is_file() and file.stat().st_size > 0 and "meta" not in str(file):
            file.write_bytes(b"\x00garbage" * 3)
            damaged += 1
    assert damaged
    longer = cut.replace(steps=9)
    with pytest.raises(TrainingCheckpointError) as caught:
        pretrain(MODEL, TOKENIZER, corpus, tmp_path, longer, resume=True, progress=False)
    message = str(caught.value)
    assert f"{latest}: corrupt checkpoint" in message
    assert f"the last good checkpoint is step 3 ({tmp_path / 'checkpoints' / '3'})" in message
