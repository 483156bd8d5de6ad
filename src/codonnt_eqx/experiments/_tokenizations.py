"""Comparing tokenizations fairly: one small model per tokenizer, pretrained on the same
coding sequences with matched budgets, scored in bits per nucleotide on the same held-out
genes and by a frozen probe on the same downstream tasks."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import time
from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from ..finetune import PRIMARY_METRIC, FinetuneConfig, TaskError, finetune
from ..inference import pseudo_log_likelihood
from ..model import ModelConfig, NucleotideTransformer, model_config_for
from ..tokenizers import Tokenizer
from ..training import GenomeCorpus, MaskedLM, PretrainConfig, pretrain, read_metrics

LN2 = math.log(2)
# The fields of a results.json row; a file of another format is not resumed from.
_RESULTS_FORMAT = 2


@dataclasses.dataclass(frozen=True)
class Arm:
    """One tokenization of the comparison.

    - `name`: a short label (a folder name: letters, digits, `-`, `_`, `.`).
    - `tokenizer`: any `Tokenizer`.
    - `alignment`: windows start at multiples of it from the start of each coding sequence
      (3 keeps a `CodonTokenizer` in frame; 1 gives any frame, as pretraining on genomes
      does).
    """

    name: str
    tokenizer: Tokenizer
    alignment: int = 1

    def __post_init__(self):
        if not self.name or not all(c.isalnum() or c in "-_." for c in self.name):
            raise ValueError(f"arm name {self.name!r}: use letters, digits, '-', '_' or '.'")
        if not isinstance(self.tokenizer, Tokenizer):
            raise TypeError(f"arm {self.name}: {self.tokenizer!r} is not a Tokenizer")


@dataclasses.dataclass(frozen=True)
class ComparisonConfig:
    """The matched budget of every arm.

    - `size`: the model body (`model_config_for`: a name of `SIZES` or a `ModelConfig`):
      same layers, width and feed-forward, so the same non-embedding parameters, for every
      tokenizer.
    - `window_nucleotides`, `batch_windows`, `steps`: every arm sees `steps x batch_windows`
      windows of the same number of bases (windows whose tokens overflow are cut): the same
      nucleotides, not the same tokens. Compute differs (tokens per base), and is reported.
    - `mask_rate`: the share of *tokens* masked (BERT's 15%; for overlapping k-mers, spans of
      k tokens, see `Tokenizer.mask_span`).
    - `peak_lr`, `warmup_steps`: the schedule (linear warmup, square-root decay).
    - `eval_every`, `eval_windows`: held-out bits/nt during training.
    - `pll_windows`: held-out windows scored by pseudo-log-likelihood (one pass per token).
    - `probe_epochs`, `probe_patience`, `probe_lr`: the frozen linear probe per task (the
      recipe of bench/protein_tasks).
    - `random_init_control`: also probe each arm's model at initialisation (same seed, no
      pretraining): what the tokenization gives a mean-pooled probe before any learning.
    """

    size: str | ModelConfig = "tiny"
    window_nucleotides: int = 384
    batch_windows: int = 16
    steps: int = 300
    mask_rate: float = 0.15
    peak_lr: float = 2e-3
    warmup_steps: int = 30
    eval_every: int = 50
    eval_windows: int = 64
    pll_windows: int = 8
    probe_epochs: int = 200
    probe_patience: int = 20
    probe_lr: float = 1e-2
    random_init_control: bool = True
    validation_fraction: float = 0.1
    seed: int = 0


def window_tokens(tokenizer: Tokenizer, nucleotides: int) -> int:
    """The fewest tokens per row whose window (`nucleotides_for_tokens`) holds at least
    `nucleotides` bases: the row length that gives every arm the same bases per window."""
    lo, hi = 2, 2
    while tokenizer.nucleotides_for_tokens(hi) < nucleotides:
        lo, hi = hi, hi * 2
        if hi > 1 << 22:
            raise ValueError(f"{tokenizer!r} never reaches {nucleotides} bases per window")
    while lo < hi:
        mid = (lo + hi) // 2
        if tokenizer.nucleotides_for_tokens(mid) >= nucleotides:
            hi = mid
        else:
            lo = mid + 1
    return hi


def _pretrain_config(arm: Arm, config: ComparisonConfig):

    tokens = window_tokens(arm.tokenizer, config.window_nucleotides)
    return PretrainConfig(
        seq_length=tokens,
        tokens_per_batch=tokens * config.batch_windows,
        steps=config.steps,
        seed=config.seed,
        mask_rate=config.mask_rate,
        init_lr=config.peak_lr / 100,
        peak_lr=config.peak_lr,
        warmup_steps=config.warmup_steps,
        dtype="float32",  # XLA:CPU's bfloat16 is slower; on GPU pass a config of your own
        log_every=max(1, config.eval_every // 5),
        eval_every=config.eval_every,
        eval_windows=config.eval_windows,
        checkpoint_every=config.eval_every,
        keep_checkpoints=1,
    )


def comparison_corpus(
    fasta: Sequence[str | os.PathLike], alignment: int, config: ComparisonConfig
) -> GenomeCorpus:
    """The coding sequences of `fasta` as the comparison reads them: windows aligned to
    `alignment` bases (the reading frame for codon arms), coding strand only."""
    return GenomeCorpus.from_fasta(
        list(fasta),
        validation_fraction=config.validation_fraction,
        # room for a window of every arm (a BPE window may be a few bases longer)
        validation_min_bases=2 * config.window_nucleotides,
        alignment=alignment,
        both_strands=False,  # coding sequences: the coding strand
    )


def _first_bases(tokenizer: Tokenizer) -> np.ndarray:
    """int [vocab]: the code (A C G T N -> 0..4) of each token's first base, -1 for specials."""
    codes = {c: i for i, c in enumerate("ACGTN")}
    special = tokenizer.special_ids
    return np.array(
        [
            -1 if i in special or not t else codes.get(t[0], -1)
            for i, t in enumerate(tokenizer.vocabulary)
        ],
        dtype=np.int32,
    )


def masked_bits_per_nucleotide(
    model, tokenizer: Tokenizer, windows: list[str], *, rate: float, seed: int
) -> float:
    """Held-out bits per nucleotide with every selected token shown as `<mask>` (no random or
    kept tokens), masking as in pretraining (`mask_span` consecutive tokens where tokens
    overlap).

    Tokens that tile the sequence (`mask_span == 1`): masked cross-entropy in bits over the
    nucleotides the masked tokens add (`token_nucleotides`), so a masked 3-mer is scored
    jointly on its three bases. Overlapping tokens (`mask_span > 1`): the cross-entropy of a
    masked token counts the bases its unmasked neighbours show too, so each base hidden from
    every unmasked token is scored alone instead, by the model's probability of it as the
    first base of the token starting there (its k-mer distribution summed over the rest).
    Both are `-log2 p` per hidden base; the second scores bases one at a time (marginals),
    which can only cost it bits against a joint score.
    """

    objective = MaskedLM.for_tokenizer(tokenizer, rate=rate, mask_prob=1.0, random_prob=0.0)
    tokens = jnp.asarray(tokenizer.batch_encode(windows))
    keys = jax.vmap(lambda i: jr.fold_in(jr.key(seed), i))(jnp.arange(tokens.shape[0]))

    @eqx.filter_jit
    def log_probs(model, inputs):
        return jax.nn.log_softmax(jax.vmap(model)(inputs).logits.astype(jnp.float32), axis=-1)

    bits = nucleotides = 0.0
    span = tokenizer.mask_span
    first = _first_bases(tokenizer)
    onehot = np.zeros((tokenizer.vocab_size, 5), np.float32)
    onehot[first >= 0, first[first >= 0]] = 1.0
    for lo in range(0, tokens.shape[0], 16):
        batch = jax.vmap(objective.mask)(keys[lo : lo + 16], tokens[lo : lo + 16])
        lp = np.asarray(log_probs(model, batch.inputs), np.float64)
        targets, selected = np.asarray(batch.targets), np.asarray(batch.selected)
        if span == 1:
            picked = np.take_along_axis(lp, targets[..., None], axis=-1)[..., 0]
            bits -= picked[selected].sum() / LN2
            nucleotides += np.asarray(tokenizer.token_nucleotides)[targets][selected].sum()
            continue
        # base t (first of token t) is hidden when tokens t-span+1..t (those in the row) are
        # all selected; score it by the first-base marginal of token t.
        hidden = selected.copy()
        for shift in range(1, span):
            before = np.ones_like(selected)
            before[:, shift:] = selected[:, :-shift] | (first[targets[:, :-shift]] < 0)
            hidden &= before
        base = first[targets]
        hidden &= (base >= 0) & (base < 4)  # A C G T (an N-token scores nothing)
        marginal = np.log(np.exp(lp) @ onehot + 1e-30)
        picked = np.take_along_axis(marginal, np.maximum(base, 0)[..., None], axis=-1)[..., 0]
        bits -= picked[hidden].sum() / LN2
        nucleotides += hidden.sum()
    return float(bits / nucleotides) if nucleotides else float("nan")


def _validation_windows(arm: Arm, corpus, config: ComparisonConfig, count: int) -> list[str]:
    coords = corpus.validation_coordinates(
        window_tokens=window_tokens(arm.tokenizer, config.window_nucleotides),
        tokenizer=arm.tokenizer,
        max_windows=count,
    )
    return corpus.window_sequences(coords)


def _pll_bits_per_nucleotide(model, arm: Arm, corpus, config: ComparisonConfig) -> float:
    """Pseudo-log-likelihood in bits per nucleotide over `pll_windows` held-out windows (each
    token masked in turn). Not defined for tokens that overlap (`mask_span > 1`): a token
    masked alone is readable from its neighbours."""

    if arm.tokenizer.mask_span != 1 or config.pll_windows == 0:
        return float("nan")
    bits = nucleotides = 0.0
    for window in _validation_windows(arm, corpus, config, config.pll_windows):
        ll = pseudo_log_likelihood(model, arm.tokenizer, window)
        bits -= float(ll.total) / LN2
        nucleotides += float(np.sum(ll.spans[:, 1] - ll.spans[:, 0]))
    return bits / nucleotides


def _probe(model, arm: Arm, tasks: dict, out: pathlib.Path, config: ComparisonConfig, log):
    """Frozen linear probe per task: `{task: primary test metric or None}` (None where the
    task needs what the tokenizer does not give, e.g. one token per codon)."""

    results = {}
    for name, task in tasks.items():
        probe = FinetuneConfig(
            mode="probe",
            epochs=config.probe_epochs,
            patience=config.probe_patience,
            learning_rate=config.probe_lr,
            seed=config.seed,
        )
        try:
            result = finetune(
                model,
                arm.tokenizer,
                task,
                probe,
                out=out / name,
                progress=False,
                log=lambda m: None,
            )
        except TaskError as e:
            log(f"  {name}: skipped ({e})")
            results[name] = None
            continue
        metric = PRIMARY_METRIC[task.kind]
        results[name] = float(result.test[metric])
        log(f"  {name}: test {metric} {results[name]:.3f}")
        jax.clear_caches()  # see compare_tokenizations
    return results


def compare_tokenizations(
    arms: Sequence[Arm],
    fasta: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    config: ComparisonConfig | None = None,
    *,
    tasks: dict | None = None,
    log: Callable[[str], None] = print,
) -> list[dict]:
    """Pretrain one model per arm on the coding sequences in `fasta` and evaluate each alike.

    **Arguments:**

    - `arms`: the tokenizations (`Arm`), e.g. `default_arms(...)`.
    - `fasta`: FASTA files of coding sequences, each record one gene read 5' to 3' on its
      coding strand; every arm trains on the same files and holds out the same last
      `validation_fraction` of each gene.
    - `out`: results folder: one pretraining run per arm (`<arm>/`, with its metrics and
      final model), `results.json` (rewritten after each arm). Run again into the same folder
      with the same config to resume: finished arms are kept, an interrupted one continues
      from its last checkpoint.
    - `config`: the matched budget (`ComparisonConfig`).
    - `tasks`: `{name: Task}` (`codonnt_eqx.finetune.load_task`) for the frozen probe.

    **Returns:** one dict per arm: vocabulary, parameters (embedding and not), tokens per
    window, nucleotides seen, wall time, held-out bits/nt (masked; pseudo-log-likelihood),
    accuracy, the validation curve, and each task's test metric (and at initialisation).
    """

    config = ComparisonConfig() if config is None else config
    out = pathlib.Path(out)
    names = [arm.name for arm in arms]
    if len(set(names)) != len(names):
        raise ValueError(f"arm names must be distinct, got {names}")
    out.mkdir(parents=True, exist_ok=True)
    settings = json.loads(json.dumps(dataclasses.asdict(config)))
    done = _finished_arms(out / "results.json", settings)
    rows, corpora = [], {}
    for arm in arms:
        previous = done.get(arm.name)
        if previous is not None and previous["tokenizer"] == repr(arm.tokenizer):
            log(f"{arm.name}: finished by an earlier run with this config; kept")
            rows.append(previous)
            _write_results(out, settings, rows)
            continue
        log(f"{arm.name}: {arm.tokenizer!r}")
        model_config = model_config_for(arm.tokenizer, config.size)
        recipe = _pretrain_config(arm, config)
        if arm.alignment not in corpora:  # read the files once per alignment, not per arm
            corpora[arm.alignment] = comparison_corpus(fasta, arm.alignment, config)
        corpus = corpora[arm.alignment]
        started = time.perf_counter()
        run = pretrain(
            model_config,
            arm.tokenizer,
            corpus,
            out / arm.name,
            recipe,
            resume=True,  # an interrupted arm continues from its last checkpoint
            progress=False,
            log=log,
        )
        seconds = time.perf_counter() - started
        model = run.model
        params = eqx.filter(model, eqx.is_array)
        total = sum(x.size for x in jax.tree.leaves(params))
        # per token: an embedding row, an LM-head row and its bias
        per_token = model_config.vocab_size * (2 * model_config.embed_dim + 1)
        records = read_metrics(out / arm.name / "metrics.jsonl")
        curve = [
            {
                "step": r["step"],
                "nucleotides_seen": r["step"] * config.batch_windows * config.window_nucleotides,
                "bits_per_nucleotide": r["bits_per_nucleotide"],
            }
            for r in records
            if r.get("split") == "validation"
        ]
        final = [r for r in records if r.get("split") == "validation"][-1]
        train = [r for r in records if r.get("split") == "train"]
        row = {
            "arm": arm.name,
            "tokenizer": repr(arm.tokenizer),
            "alignment": arm.alignment,
            "vocab_size": arm.tokenizer.vocab_size,
            "mask_span": arm.tokenizer.mask_span,
            "tokens_per_window": recipe.seq_length,
            "parameters": int(total),
            "non_embedding_parameters": int(total - per_token),
            "nucleotides_seen": config.steps * config.batch_windows * config.window_nucleotides,
            "tokens_seen": config.steps * recipe.tokens_per_batch,
            "train_seconds": seconds,
            "tokens_per_s": float(np.median([r["tokens_per_s"] for r in train[1:] or train])),
            "bits_per_nucleotide": masked_bits_per_nucleotide(
                model,
                arm.tokenizer,
                _validation_windows(arm, corpus, config, config.eval_windows),
                rate=config.mask_rate,
                seed=config.seed,
            ),
            "validation_bits_per_nucleotide": final["bits_per_nucleotide"],
            "accuracy": final["accuracy"],
            "pll_bits_per_nucleotide": _pll_bits_per_nucleotide(model, arm, corpus, config),
            "curve": curve,
            "tasks": _probe(model, arm, tasks or {}, out / arm.name / "probe", config, log),
            "tasks_random_init": {},
        }
        if config.random_init_control and tasks:
            log(f"{arm.name}: the same model at initialisation")
            # exactly the model pretraining started from (`pretrain`'s initialisation)
            initial = NucleotideTransformer(model_config, key=jr.fold_in(jr.key(config.seed), 0))
            row["tasks_random_init"] = _probe(
                initial, arm, tasks, out / arm.name / "probe-init", config, log
            )
        log(
            f"{arm.name}: {row['bits_per_nucleotide']:.3f} bits/nt masked, "
            f"{row['pll_bits_per_nucleotide']:.3f} bits/nt PLL, {seconds:.0f} s"
        )
        rows.append(row)
        _write_results(out, settings, rows)
        # Every arm compiles dozens of shapes; a process keeping them all runs out of memory
        # maps (LLVM "Cannot allocate memory") by the fourth arm.
        jax.clear_caches()
    return rows


def _write_results(out: pathlib.Path, settings: dict, rows: list[dict]) -> None:
    """results.json, replaced whole (a crash mid-write leaves the previous one)."""
    part = out / "results.json.part"
    record = {"format": _RESULTS_FORMAT, "config": settings, "arms": rows}
    part.write_text(json.dumps(record, indent=2) + "\n")
    part.replace(out / "results.json")


def _finished_arms(path: pathlib.Path, settings: dict) -> dict[str, dict]:
    """The rows of an earlier run into the same folder with the same config and row format,
    by arm name."""
    try:
        earlier = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    if (
        not isinstance(earlier, dict)
        or earlier.get("format") != _RESULTS_FORMAT
        or earlier.get("config") != settings
    ):
        return {}
    return {row["arm"]: row for row in earlier.get("arms", []) if isinstance(row, dict)}
