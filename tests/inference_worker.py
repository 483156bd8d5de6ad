"""Embeds and scores on 8 fake CPU devices and on one, for the data-parallel inference test
(started in a subprocess: device counts are fixed at jax start-up).

    python inference_worker.py OUT.npz      # prints a JSON line about the batches placed
"""

import json
import sys

import jax
import numpy as np

from codonnt_eqx import Embedder, Scorer, Variant
from codonnt_eqx.inference._batching import BucketedRunner
from helpers import TOKENIZERS, V2, perturbed_model

# Lengths that give several buckets, windows (window 40), full batches and short last ones.
LENGTHS = (7, 31, 45, 4, 120, 200, 13, 60, 90, 300, 17, 55)
OPTIONS = dict(bucket=16, batch_tokens=128, window=40)

placed = []  # (rows, shards, distinct devices, rows per shard) of every batch put on devices
_put = BucketedRunner._put


def _spy(self, batch):
    out = _put(self, batch)
    if isinstance(out, jax.Array):
        shards = out.addressable_shards
        rows = {s.data.shape[0] for s in shards}
        placed.append((out.shape[0], len(shards), len({s.device for s in shards}), sorted(rows)))
    return out


def run(model, tok, devices) -> dict:
    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACGT"), size=n)) for n in LENGTHS]
    embedder = Embedder(model, tok, pooling="mean", devices=devices, **OPTIONS)
    pooled = np.stack([e.vectors for e in embedder(seqs)])
    per_token = Embedder(model, tok, pooling="none", devices=devices, **OPTIONS)
    tokens = np.concatenate([e.vectors for e in per_token(seqs)])
    scorer = Scorer(model, tok, devices=devices, **OPTIONS)
    pll = scorer.pseudo_log_likelihood(seqs[9]).log_probs
    cds = "ATGGCCAAACTGGGTTTCGATTAA"
    variants = [Variant("g", 8, "A", "T"), Variant("g", 6, "CA", "TG"), Variant("g", 4, "GCC", "-")]
    scores = [s.score for s in scorer.score_variants({"g": cds}, variants)]
    rows = {r for runner in (embedder.runner, scorer.runner) for r, _ in runner.shapes}
    return {
        "pooled": pooled,
        "tokens": tokens,
        "pll": pll,
        "variants": np.array(scores),
        "rows": np.array(sorted(rows)),
        "num_devices": np.array(embedder.runner.num_devices),
    }


if __name__ == "__main__":
    BucketedRunner._put = _spy
    model, tok = perturbed_model(V2), TOKENIZERS[V2]
    one = run(model, tok, 1)
    assert not placed, "one device: batches are not placed"
    every = run(model, tok, None)
    np.savez(
        sys.argv[1],
        **{f"one_{k}": v for k, v in one.items()},
        **{f"all_{k}": v for k, v in every.items()},
    )
    print(json.dumps({"devices": jax.device_count(), "placed": placed}))
