"""Fitting a task: the probe on cached representations, or IA³ / LoRA / full fine-tuning,
with early stopping on the validation split, a metrics log, a results file and the learned
head and adapters. The step (`_step.py`) knows nothing of this loop."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import pathlib
import time
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax

from ..io import atomic_output, claim_run_folder
from ..model import NucleotideTransformer, RunOptions, with_options
from ..tokenizers import Tokenizer
from ..training import MetricsLog, progress_bar
from ._config import FinetuneConfig
from ._data import Encoded, batches, encode_split
from ._finetuned import Finetuned, keep_mask, representation
from ._heads import Head, SequenceHead, TokenHead, mean_pool
from ._ia3 import add_ia3
from ._lora import add_lora
from ._metrics import PRIMARY_METRIC, task_metrics
from ._provenance import tokenizer_digest, weights_digest
from ._saving import ADAPTER_FILE, save_finetuned
from ._step import feature_forward, make_step, sequence_forward
from ._tasks import Task, TaskKind
from ._trainable import trainable_filter

# What a run writes into its `out` folder.
RUN_FILES = ("results.json", "metrics.jsonl", ADAPTER_FILE, "model")


@dataclasses.dataclass(frozen=True)
class FinetuneResult:
    """What `finetune` returns: the predictor at its best validation epoch, the metrics of
    the validation and test splits there (and of each extra test set, by name), and the run's
    summary (also in `results.json`)."""

    finetuned: Finetuned
    validation: dict
    test: dict
    results: dict
    extra_tests: dict = dataclasses.field(default_factory=dict)


def finetune(
    model: NucleotideTransformer,
    tokenizer: Tokenizer,
    task: Task,
    config: FinetuneConfig | None = None,
    *,
    out: str | os.PathLike | None = None,
    cache: str | os.PathLike | None = None,
    model_name: str = "",
    head: Head | None = None,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> FinetuneResult:
    """Fit `task` on top of `model`: a frozen probe, IA³, LoRA, or full fine-tuning.

    **Arguments:**

    - `model`, `tokenizer`: the base model (not modified: PEFT modes train adapters beside
      its weights, full fine-tuning trains a copy) and its tokenizer.
    - `task`: from `load_task`.
    - `config`: a `FinetuneConfig` (mode, head, optimiser, early stopping).
    - `out`: run folder for `metrics.jsonl`, `results.json`, `adapter.safetensors` (head and
      adapters; `load_finetuned` reads it back) and, after full fine-tuning, `model/`.
    - `cache`: folder for the probe's representations, keyed by the model's weights, the layer
      and the sequences, so a second probe (another head) skips the model.
    - `model_name`: recorded in the results (e.g. the checkpoint folder).
    - `head`: a trained `Head` to start from instead of a random one, e.g. a probe's
      (`load_finetuned(probe_run, ...)[0].head.head`): fine-tuning after a linear probe
      (LP-FT), so that the few fine-tuning steps are not spent fitting the head from scratch.
    - `overwrite`: replace an earlier run in `out` (its `results.json`, `metrics.jsonl` or
      adapter); without it such a folder is refused with `OutputError` before any work.
    - `progress`: show a progress bar; `log`: where messages go.

    **Returns:** a `FinetuneResult`.

    ```python
    model, tok = from_pretrained("codon-nt-mini")
    task = load_task("gfp.csv", "regression")
    result = finetune(model, tok, task, FinetuneConfig(mode="ia3"), out="runs/gfp-ia3")
    print(result.test["spearman"])
    ```
    """
    config = FinetuneConfig() if config is None else config
    started = time.perf_counter()
    out = pathlib.Path(out) if out is not None else None
    if out is not None:
        claim_run_folder(out, RUN_FILES, overwrite=overwrite)
    kind = task.kind
    if kind == "regression":
        train_labels = np.asarray(task.train.labels)
        mean, std = float(train_labels.mean()), float(train_labels.std())
        std = std if std > 0 else 1.0
    else:
        mean, std = 0.0, 1.0
    data = {
        s: encode_split(
            task,
            task.split(s),
            tokenizer,
            max_codons=config.max_codons,
            label_mean=mean,
            label_std=std,
        )
        for s in task.split_names
    }
    key = jr.key(config.seed)
    k_head, k_lora = jr.split(key)
    special = tuple(sorted(tokenizer.special_ids))
    if head is None:
        head = Head(model.config.embed_dim, task.num_outputs, config.hidden, key=k_head)
    elif (head.in_features, head.out_features, head.hidden) != (
        model.config.embed_dim,
        task.num_outputs,
        config.hidden,
    ):
        raise ValueError(
            f"the initial head maps {head.in_features} -> {head.out_features} (hidden "
            f"{head.hidden}); this model and task need {model.config.embed_dim} -> "
            f"{task.num_outputs} (hidden {config.hidden})"
        )
    wrapped = TokenHead(head) if kind == "per-residue" else SequenceHead(head)
    # The config's run options while fitting; the result has the defaults (see the end).
    model = with_options(model, **dataclasses.asdict(config.run_options))
    base = model
    if config.mode == "ia3":
        model = add_ia3(model)
    elif config.mode == "lora":
        model = add_lora(
            model,
            rank=config.lora_rank,
            alpha=config.lora_alpha,
            targets=config.lora_targets,
            key=k_lora,
        )
    finetuned = Finetuned(model, wrapped, config.layer, special)
    optimizer = optax.adamw(config.lr, weight_decay=config.weight_decay)
    metrics_log = MetricsLog(out / "metrics.jsonl" if out is not None else None)
    log(
        f"{task.describe()}; mode {config.mode}, "
        f"{'linear' if config.hidden is None else f'MLP ({config.hidden})'} head"
    )

    fitting = _Fitting(
        kind, task, config, optimizer, mean, std, metrics_log, progress, log, tokenizer.pad_id
    )
    if config.mode == "probe":
        cache_key = None
        if cache is not None:
            cache_key = (cache, weights_digest(base), tokenizer_digest(tokenizer))
        features = {
            s: _probe_features(
                base, data[s], kind, config, special, cache_key, tokenizer.pad_id, log
            )
            for s in task.split_names
        }
        log(
            f"representations of layer {config.layer} computed "
            f"({sum(len(f[1]) for f in features.values())} rows)"
        )
        trained_head, best = _fit(feature_forward, head, features, fitting, probe=True)
        finetuned = Finetuned(
            base,
            TokenHead(trained_head) if kind == "per-residue" else SequenceHead(trained_head),
            config.layer,
            special,
        )
    else:
        forward = sequence_forward()
        finetuned, best = _fit(forward, finetuned, data, fitting, probe=False)

    trainable, _ = eqx.partition(finetuned, trainable_filter(finetuned, config.mode))
    head_params = eqx.filter(finetuned.head, eqx.is_inexact_array)
    count = lambda tree: sum(x.size for x in jax.tree.leaves(tree))  # noqa: E731
    info = {
        "mode": config.mode,
        "layer": config.layer,
        "head": {
            "kind": "token" if kind == "per-residue" else "sequence",
            "in_features": head.in_features,
            "out_features": head.out_features,
            "hidden": config.hidden,
        },
        "lora": {
            "rank": config.lora_rank,
            "alpha": config.lora_alpha,
            "targets": list(config.lora_targets),
        },
        "task": {"name": task.name, "kind": kind, "classes": task.classes},
        "label_mean": mean,
        "label_std": std,
        "base_model": model_name,
    }
    results = {
        "task": task.name,
        "kind": kind,
        "sizes": {s: len(task.split(s)) for s in task.split_names},
        "model": model_name,
        "model_parameters": base.num_parameters(),
        "trainable_parameters": count(eqx.filter(trainable, eqx.is_inexact_array))
        + (0 if config.mode == "full" else count(head_params)),
        "config": dataclasses.asdict(config) | {"learning_rate": config.lr},
        "primary_metric": PRIMARY_METRIC[kind],
        "best_epoch": best["epoch"],
        "epochs_run": best["epochs_run"],
        "validation": best["validation"],
        "test": best["test"],
        "extra_tests": best["extra_tests"],
        "seconds": time.perf_counter() - started,
        "backend": jax.default_backend(),
    }
    if out is not None:
        save_finetuned(out, finetuned, tokenizer, info)
        with atomic_output(out / "results.json") as tmp:
            tmp.write_text(json.dumps(results, indent=2) + "\n")
    metrics_log({"split": "test", "epoch": best["epoch"], **best["test"]})
    for name, metrics in best["extra_tests"].items():
        metrics_log({"split": f"test:{name}", "epoch": best["epoch"], **metrics})
    finetuned = with_options(finetuned, **dataclasses.asdict(RunOptions()))
    return FinetuneResult(finetuned, best["validation"], best["test"], results, best["extra_tests"])


def _probe_features(model, data: Encoded, kind, config, special, cache_key, pad_id, log):
    """(features [rows, embed], targets [rows]): pooled per sequence, or one row per labelled
    residue; computed once per model, layer and sequences, optionally cached on disk (the
    representations only: targets always come from `data`, so tasks on the same sequences
    share a cache and keep their own labels)."""
    labelled_rows = data.targets >= 0 if kind == "per-residue" else None
    expected_rows = int(labelled_rows.sum()) if labelled_rows is not None else len(data.tokens)
    path = cached = None
    provenance: dict = {}
    if cache_key is not None:
        cache, weights, tokens = cache_key
        inputs = hashlib.sha256(data.tokens.tobytes())
        if labelled_rows is not None:  # which residues get a row
            inputs.update(np.packbits(labelled_rows).tobytes())
        provenance = {
            "base_weights": weights,
            "tokenizer": tokens,
            "settings": json.dumps([config.layer, config.dtype, kind, list(special)]),
            "inputs": inputs.hexdigest()[:16],
        }
        key = hashlib.sha256(json.dumps(provenance, sort_keys=True).encode()).hexdigest()[:24]
        path = pathlib.Path(cache) / f"representations-{key}.npz"
        cached = _read_cache(path, provenance, expected_rows, model.config.embed_dim, log)

    @eqx.filter_jit
    def embed(model, tokens):
        def one(t):
            reps = representation(model, t, config.layer)
            return reps if kind == "per-residue" else mean_pool(reps, keep_mask(t, special))

        return jax.vmap(one)(tokens)

    rows, targets = [], []
    for tokens, target, _, index in batches(data, config.batch_size, config.bucket, pad_id, None):
        real = index >= 0
        out = None if cached is not None else np.asarray(embed(model, jnp.asarray(tokens)))
        if kind == "per-residue":
            labelled = (target >= 0) & real[:, None]
            targets.append(target[labelled])
            if out is not None:
                rows.append(out[labelled])
        else:
            targets.append(target[real])
            if out is not None:
                rows.append(out[real])
    targets = np.concatenate(targets)
    if cached is not None:
        return cached, targets
    features = np.concatenate(rows).astype(np.float32)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, features=features, provenance=json.dumps(provenance, sort_keys=True))
    return features, targets


def _read_cache(path: pathlib.Path, provenance: dict, rows: int, width: int, log):
    """The cached representations at `path`, or None (missing, or failing any check: then
    they are recomputed and the file replaced). A cache is derived data: a bad one is
    reported and rebuilt, never used."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as saved:
            features = saved["features"]
            recorded = json.loads(str(saved["provenance"]))
    except Exception as e:  # truncated, not a zip, wrong keys: all mean "rebuild it"
        log(f"representation cache {path} is unreadable ({type(e).__name__}: {e}); recomputing")
        return None
    problem = None
    if recorded != provenance:
        differ = sorted(k for k in provenance if recorded.get(k) != provenance[k])
        problem = "made from other " + ", ".join(
            f"{k} ({recorded.get(k)} there, {provenance[k]} here)" for k in differ
        )
    elif features.dtype != np.float32 or features.shape != (rows, width):
        problem = f"holds {features.dtype}{list(features.shape)}, not float32[{rows}, {width}]"
    elif not np.isfinite(features).all():
        problem = "holds NaN or infinity"
    if problem is not None:
        log(f"representation cache {path} {problem}; recomputing")
        return None
    return features


def _feature_batches(features, targets, batch_size, rng):
    n = len(targets)
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        real = len(idx)
        idx = np.concatenate([idx, np.full(batch_size - real, idx[0])])
        weights = (np.arange(batch_size) < real).astype(np.float32)
        yield features[idx], targets[idx], weights, np.where(weights > 0, idx, -1)


def _predict(predict, module, split_data, kind, config, probe, pad_id, mean, std):
    """Predictions and targets of one split in task units (flat residues per residue)."""
    if probe:
        features, targets = split_data
        stream = _feature_batches(features, targets, config.probe_batch_size, None)
    else:
        stream = batches(split_data, config.batch_size, config.bucket, pad_id, None)
    predictions, truths = [], []
    for inputs, target, _, index in stream:
        out = np.asarray(predict(module, jnp.asarray(inputs)), np.float64)
        real = index >= 0
        if kind == "regression":
            predictions.append(out[real, 0] * std + mean)
            truths.append(target[real].astype(np.float64) * std + mean)
        elif out.ndim == 3:  # per residue, through the model
            labelled = (target >= 0) & real[:, None]
            predictions.append(out.argmax(-1)[labelled])
            truths.append(target[labelled])
        else:
            predictions.append(out[real].argmax(-1))
            truths.append(target[real])
    return np.concatenate(predictions), np.concatenate(truths)


@dataclasses.dataclass(frozen=True)
class _Fitting:
    """What a fit needs besides the module and its data."""

    kind: TaskKind
    task: Task
    config: FinetuneConfig
    optimizer: optax.GradientTransformation
    mean: float  # regression labels are standardised with the training split's mean and std
    std: float
    metrics_log: MetricsLog
    progress: bool
    log: Callable[[str], None]
    pad_id: int


def _fit(forward, module, data, fitting: _Fitting, *, probe: bool):
    """Train `module` (a head on features, or a `Finetuned`) with early stopping; returns it
    at its best validation epoch and a summary."""
    kind, task, config, optimizer = fitting.kind, fitting.task, fitting.config, fitting.optimizer
    mean, std, metrics_log, log = fitting.mean, fitting.std, fitting.metrics_log, fitting.log
    progress, pad_id = fitting.progress, fitting.pad_id
    mode = "full" if probe else config.mode
    spec = trainable_filter(module, mode)
    if not probe:
        # the head always trains
        spec = eqx.tree_at(lambda f: f.head, spec, jax.tree.map(eqx.is_inexact_array, module.head))
    trainable, frozen = eqx.partition(module, spec)
    # A copy: the step donates what trains, and in full fine-tuning that would otherwise be
    # the caller's model.
    trainable = jax.tree.map(jnp.copy, trainable)
    opt_state = optimizer.init(trainable)
    step = make_step(forward, kind, optimizer)
    predict = eqx.filter_jit(forward)
    rng = np.random.default_rng(config.seed)
    metric = PRIMARY_METRIC[kind]
    num_classes = task.num_outputs if kind != "regression" else None

    def train_stream():
        if probe:
            features, targets = data["train"]
            for x, y, w, _ in _feature_batches(features, targets, config.probe_batch_size, rng):
                yield x, y, w
        else:
            yield from batches(data["train"], config.batch_size, config.bucket, pad_id, rng)

    def evaluate(split):
        current = eqx.combine(trainable, frozen)
        p, t = _predict(predict, current, data[split], kind, config, probe, pad_id, mean, std)
        return task_metrics(kind, p, t, num_classes)

    n_train = len(data["train"][1]) if probe else len(data["train"])
    per_epoch = math.ceil(n_train / (config.probe_batch_size if probe else config.batch_size))
    bar = progress_bar(config.epochs * per_epoch, enabled=progress)
    best = {"score": -math.inf, "epoch": 0, "params": None, "validation": None}
    step_count, epoch = 0, 0
    try:
        for epoch in range(1, config.epochs + 1):
            start, losses = time.perf_counter(), []
            for inputs, targets, weights in train_stream():
                trainable, opt_state, loss = step(
                    frozen,
                    trainable,
                    opt_state,
                    jnp.asarray(inputs),
                    jnp.asarray(targets),
                    jnp.asarray(weights),
                )
                losses.append(loss)
                step_count += 1
                if bar is not None:
                    bar.update(1)
            train_loss = float(np.mean([float(x) for x in losses]))
            if not math.isfinite(train_loss):
                raise ValueError(
                    f"non-finite training loss in epoch {epoch}; lower the learning rate"
                )
            metrics_log(
                {
                    "split": "train",
                    "epoch": epoch,
                    "step": step_count,
                    "loss": train_loss,
                    "seconds": time.perf_counter() - start,
                }
            )
            validation = evaluate("validation")
            metrics_log({"split": "validation", "epoch": epoch, "step": step_count, **validation})
            score = validation[metric]
            score = -math.inf if math.isnan(score) else score
            if bar is not None:
                bar.set_postfix({"loss": f"{train_loss:.3f}", f"val_{metric}": f"{score:.3f}"})
            if score > best["score"]:
                # copied: the next step donates (and so invalidates) the current buffers
                best = {
                    "score": score,
                    "epoch": epoch,
                    "validation": validation,
                    "params": jax.tree.map(jnp.copy, trainable),
                }
            elif epoch - best["epoch"] >= config.patience:
                log(
                    f"early stop after epoch {epoch}: validation {metric} last improved in "
                    f"epoch {best['epoch']}"
                )
                break
    finally:
        if bar is not None:
            bar.close()
    trainable = best["params"] if best["params"] is not None else trainable
    test = evaluate("test")
    extra_tests = {name: evaluate(f"test:{name}") for name, _ in task.extra_tests}
    best_module = eqx.combine(trainable, frozen)
    log(
        f"best epoch {best['epoch']}: validation {metric} {best['score']:.4f}; test "
        + ", ".join(f"{k} {v:.4f}" for k, v in test.items())
    )
    for name, metrics in extra_tests.items():
        log(f"  test set {name}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    return best_module, {
        "epoch": best["epoch"],
        "epochs_run": epoch,
        "validation": best["validation"],
        "test": test,
        "extra_tests": extra_tests,
    }
