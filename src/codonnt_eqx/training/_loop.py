"""The pretraining loop: data, the jitted step, validation, metrics, checkpoints and signals.
The step knows nothing of these; this file knows nothing of the step's inside."""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
import signal
import time
from collections.abc import Callable

import equinox as eqx
import jax
import jax.random as jr
import numpy as np
from jax.experimental import multihost_utils

from ..checkpoints import save_pretrained
from ..io import OutputError
from ..model import ModelConfig, NucleotideTransformer, RunOptions, with_options
from ..tokenizers import Tokenizer
from ._checkpoint import TrainingCheckpointError, TrainingCheckpoints
from ._config import PretrainConfig
from ._data import GenomeCorpus
from ._errors import TrainingError
from ._loss import masked_lm_metrics, summarise
from ._run_log import MetricsLog, progress_bar
from ._schedule import codon_nt_optimizer, warmup_sqrt_decay
from ._sharding import make_mesh, put_batch, put_state
from ._step import MaskedLM, make_train_step


@dataclasses.dataclass(frozen=True)
class PretrainResult:
    """What `pretrain` returns: the final model, the last step run, and why it stopped
    (`"done"`, `"signal"`, and then `signal`: `"SIGINT"` or `"SIGTERM"`)."""

    model: NucleotideTransformer
    step: int
    stopped: str
    signal: str | None = None


def _identity(model_config, config, tokenizer, corpus) -> dict:
    """What a checkpoint must match to be resumed (bookkeeping fields may change)."""
    recipe = dataclasses.asdict(config)
    for free in ("steps", "log_every", "eval_every", "checkpoint_every", "keep_checkpoints"):
        recipe.pop(free)
    return {
        "model": dataclasses.asdict(model_config),
        "recipe": recipe,
        "vocabulary": list(tokenizer.vocabulary),
        "corpus": [[f.name, f.bases, f.probability] for f in corpus.describe()],
    }


# What a run writes into its folder.
RUN_FILES = ("checkpoints", "metrics.jsonl", "model")


def _last_good(checkpoints: TrainingCheckpoints, bad: int) -> str:
    """Where to resume from instead of the corrupt checkpoint `bad`: the newest earlier one
    whose metadata reads back (its arrays are checked when it is restored)."""
    for step in reversed([s for s in checkpoints.all_steps() if s < bad]):
        try:
            checkpoints.metadata(step)
        except TrainingCheckpointError:
            continue
        return (
            f"the last good checkpoint is step {step} ({checkpoints.directory / str(step)}): "
            f"move {checkpoints.directory / str(bad)} out of the folder and resume again "
            "to continue from it"
        )
    return "no earlier checkpoint reads back: start the run again in a new folder"


def pretrain(
    model_config: ModelConfig,
    tokenizer: Tokenizer,
    corpus: GenomeCorpus,
    out: str | os.PathLike,
    config: PretrainConfig | None = None,
    *,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
    started: Callable[[int], None] | None = None,
) -> PretrainResult:
    """Pretrain a model with the masked-language-model objective, resumably.

    **Arguments:**

    - `model_config`: the architecture; its vocabulary and special ids must match `tokenizer`.
    - `tokenizer`: any `Tokenizer` (its special ids decide what is never masked).
    - `corpus`: the genomes (`GenomeCorpus.from_fasta`); its held-out regions are validated on.
    - `out`: run folder: `checkpoints/`, `metrics.jsonl`, and the final model in the Hugging
      Face layout under `model/` (loadable with `from_pretrained`).
    - `config`: the recipe (`PretrainConfig`, Codon-NT's defaults).
    - `resume`: continue from the latest checkpoint in `out` (bit-exact: same batches, same
      masks, same parameters as an uninterrupted run). Without it, a folder that already has
      checkpoints is refused.
    - `progress`: show a progress bar; `log`: where messages go.
    - `started`: called with the first step once the folder and any checkpoint are accepted,
      before training (the CLI saves the run's settings there).

    SIGINT and SIGTERM stop the run after the current step with a checkpoint saved; a
    non-finite loss stops it with `TrainingError` naming the step, keeping the last good
    checkpoint. Works with one or many devices and processes (`jax.distributed`).
    """

    config = PretrainConfig() if config is None else config
    out = pathlib.Path(out)
    _check_compatible(model_config, tokenizer, config)
    mesh = make_mesh(config.fsdp)
    devices, processes = mesh.size, jax.process_count()
    micro = config.micro_batch_size or config.batch_size
    if micro % devices:
        raise ValueError(
            f"a micro-batch of {micro} sequences does not divide over {devices} devices; "
            "choose tokens_per_batch / micro_batch_size so that it does"
        )
    lead = jax.process_index() == 0
    # Fail now, not at the first evaluation, when no held-out region fits a window.
    corpus.validation_coordinates(
        window_tokens=config.seq_length, tokenizer=tokenizer, max_windows=config.eval_windows
    )
    out.mkdir(parents=True, exist_ok=True)
    checkpoints = TrainingCheckpoints(
        out / "checkpoints",
        _identity(model_config, config, tokenizer, corpus),
        keep=config.keep_checkpoints,
    )
    latest = checkpoints.latest_step()
    if latest is not None and not resume:
        raise OutputError(
            f"{out} already has checkpoints (latest: step {latest}); pass resume=True "
            "(--resume) to continue that run, or choose another folder"
        )
    earlier = [name for name in ("metrics.jsonl", "model") if (out / name).exists()]
    if earlier and not resume:  # a run that ended, or died before its first checkpoint
        raise OutputError(
            f"{out} already holds a run ({', '.join(earlier)}); pass resume=True (--resume) "
            "to continue it (from the start if it has no checkpoint), or choose another folder"
        )

    key = jr.key(config.seed)
    # The run options are the config's while training; the model returned has the defaults,
    # like a model loaded from the saved folder.
    options = dataclasses.asdict(config.run_options)
    model = with_options(NucleotideTransformer(model_config, key=jr.fold_in(key, 0)), **options)
    schedule = warmup_sqrt_decay(
        init_value=config.init_lr, peak_value=config.peak_lr, warmup_steps=config.warmup_steps
    )
    optimizer = codon_nt_optimizer(schedule, b1=config.b1, b2=config.b2, eps=config.eps)
    opt_state = optimizer.init(eqx.filter(model, eqx.is_array))
    model, opt_state = put_state((model, opt_state), mesh)
    start = 0
    if resume and latest is not None:
        try:
            (model, opt_state), _ = checkpoints.restore(latest, (model, opt_state))
        except TrainingCheckpointError as e:
            raise TrainingCheckpointError(f"{e}; {_last_good(checkpoints, latest)}") from e
        start = latest
        log(f"resumed from {checkpoints.directory / str(latest)} (step {latest})")
    if started is not None:
        started(start)

    objective = MaskedLM.for_tokenizer(
        tokenizer, rate=config.mask_rate, mask_prob=config.mask_prob, random_prob=config.random_prob
    )
    step_fn = make_train_step(optimizer, objective)
    evaluate = _evaluator(objective)
    metrics_log = MetricsLog(out / "metrics.jsonl" if lead else None, resume_step=start)
    train_key, eval_key = jr.fold_in(key, 1), jr.fold_in(key, 2)
    local = config.batch_size // processes
    first = jax.process_index() * local
    example_ids = np.arange(first, first + local).reshape(config.accumulation, -1)

    def batch(step: int) -> np.ndarray:
        tokens = corpus.batch(
            config.seed,
            step,
            config.batch_size,
            window_tokens=config.seq_length,
            tokenizer=tokenizer,
            process_index=jax.process_index(),
            process_count=processes,
        )
        return tokens.reshape(config.accumulation, -1, config.seq_length)

    def validate(step: int) -> None:
        total = None
        for i, vb in enumerate(
            corpus.validation_batches(
                micro,
                window_tokens=config.seq_length,
                tokenizer=tokenizer,
                max_windows=config.eval_windows,
                process_index=jax.process_index(),
                process_count=processes,
            )
        ):
            rows = vb.tokens.shape[0]  # this process's share of a global batch of `micro`
            ids = i * micro + jax.process_index() * rows + np.arange(rows)
            part = evaluate(
                model,
                put_batch(vb.tokens[None], mesh),
                put_batch(vb.is_real[None], mesh),
                put_batch(ids[None], mesh),
                eval_key,
            )
            total = part if total is None else total + part
        if total is not None:
            record = {"step": step, "split": "validation", **summarise(total)}
            metrics_log(record)
            log(
                f"step {step}: validation loss {record['loss']:.4f}, "
                f"{record['bits_per_nucleotide']:.4f} bits/nt, accuracy {record['accuracy']:.3f}"
            )

    stop: dict[str, str | None] = {"signal": None}
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def on_signal(signum, frame):
        if stop["signal"] is not None:  # a second Ctrl-C: stop now
            signal.signal(signum, previous[signum])
            raise KeyboardInterrupt
        stop["signal"] = signal.Signals(signum).name
        log(f"\n{stop['signal']}: stopping after this step, saving a checkpoint")

    def save(step: int) -> None:
        try:
            checkpoints.save(step, (model, opt_state), {"seed": config.seed})
        except OSError as e:
            good = checkpoints.latest_step()
            raise TrainingError(
                f"could not save the checkpoint of step {step} ({e}); the last good checkpoint "
                f"is {'step ' + str(good) if good is not None else 'none'} in "
                f"{checkpoints.directory} (disk full?)"
            ) from e

    bar = progress_bar(config.steps, initial=start, enabled=progress and lead)
    window = {"metrics": None, "tokens": 0, "time": time.perf_counter()}
    step = start
    tokens_per_step = config.batch_size * config.seq_length
    installed = _install(on_signal)
    try:
        while step < config.steps and stop["signal"] is None:
            tokens = put_batch(batch(step), mesh)
            ids = put_batch(example_ids, mesh)
            model, opt_state, metrics = step_fn(
                model, opt_state, tokens, jr.fold_in(train_key, step), ids
            )
            step += 1
            m = metrics.loss
            window["metrics"] = m if window["metrics"] is None else window["metrics"] + m
            window["tokens"] += tokens_per_step
            must_save = step % config.checkpoint_every == 0 or step == config.steps
            if step % config.log_every == 0 or must_save or step == config.steps:
                summary = summarise(window["metrics"])
                if not all(math.isfinite(v) for v in summary.values()) or not math.isfinite(
                    float(metrics.grad_norm)
                ):
                    good = checkpoints.latest_step()
                    raise TrainingError(
                        f"non-finite loss or gradient by step {step} (loss {summary['loss']}); "
                        f"stopped. The last good checkpoint is "
                        f"{'step ' + str(good) if good is not None else 'none'}; lower the "
                        "learning rate or check the data"
                    )
                elapsed = time.perf_counter() - window["time"]
                record = {
                    "step": step,
                    "split": "train",
                    "tokens_seen": step * tokens_per_step,
                    **summary,
                    "lr": float(np.asarray(schedule(step - 1))),
                    "grad_norm": float(np.asarray(metrics.grad_norm)),
                    "tokens_per_s": window["tokens"] / elapsed,
                }
                metrics_log(record)
                if bar is not None:
                    bar.set_postfix(
                        loss=f"{summary['loss']:.3f}",
                        bits_nt=f"{summary['bits_per_nucleotide']:.3f}",
                        tok_s=f"{record['tokens_per_s']:,.0f}",
                    )
                window = {"metrics": None, "tokens": 0, "time": time.perf_counter()}
            if bar is not None:
                bar.update(1)
            if step % config.eval_every == 0 or step == config.steps:
                validate(step)
            if must_save or stop["signal"] is not None:
                save(step)
    finally:
        _restore(installed, previous)
        if bar is not None:
            bar.close()
    if step == config.steps:
        final = _gather(model)
        if lead:
            save_pretrained(final, tokenizer, out / "model")
            log(f"final model (Hugging Face layout): {out / 'model'}")
    checkpoints.close()
    model = with_options(model, **dataclasses.asdict(RunOptions()))
    return PretrainResult(model, step, "signal" if stop["signal"] else "done", stop["signal"])


def _check_compatible(model_config: ModelConfig, tokenizer: Tokenizer, config: PretrainConfig):
    if model_config.vocab_size != tokenizer.vocab_size:
        raise ValueError(
            f"the model's vocabulary ({model_config.vocab_size}) is not the tokenizer's "
            f"({tokenizer.vocab_size})"
        )
    if (model_config.pad_token_id, model_config.mask_token_id) != (
        tokenizer.pad_id,
        tokenizer.mask_id,
    ):
        raise ValueError("the model's pad/mask ids are not the tokenizer's")
    if (
        model_config.positional_embedding == "learned"
        and config.seq_length > model_config.max_positions
    ):
        raise ValueError(
            f"seq_length {config.seq_length} is longer than the model's max_positions "
            f"{model_config.max_positions} (learned positions)"
        )


def _evaluator(objective: MaskedLM):
    @eqx.filter_jit
    def evaluate(model, tokens, is_real, ids, key):
        tokens, is_real, ids = tokens[0], is_real[0], ids[0]
        keys = jax.vmap(lambda i: jr.fold_in(key, i))(ids)
        batch = jax.vmap(objective.mask)(keys, tokens)
        logits = jax.vmap(model)(batch.inputs).logits
        selected = batch.selected & is_real[:, None]
        return masked_lm_metrics(logits, batch.targets, selected, objective.nucleotides)

    return evaluate


def _gather(model):
    """The model with every array whole on this host (across processes too)."""
    if jax.process_count() == 1:
        return jax.device_get(model)

    params, static = eqx.partition(model, eqx.is_array)
    return eqx.combine(multihost_utils.process_allgather(params, tiled=True), static)


def _install(handler):
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, handler)
    except ValueError:  # not the main thread: leave signals alone
        return False
    return True


def _restore(installed: bool, previous) -> None:
    if installed:
        for sig, old in previous.items():
            signal.signal(sig, old)
