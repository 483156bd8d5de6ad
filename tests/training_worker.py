"""Runs a few training steps on fake devices or as one of several processes, for the sharding
and multi-process tests (started in a subprocess: device counts are fixed at jax start-up).

    python training_worker.py devices FASTA             # 1 device vs data parallel vs FSDP
    python training_worker.py process FASTA OUT ID N PORT   # one of N jax.distributed processes
"""

import json
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr

from codonnt_eqx import KmerTokenizer, ModelConfig, NucleotideTransformer
from codonnt_eqx.training import (
    GenomeCorpus,
    MaskedLM,
    codon_nt_optimizer,
    make_mesh,
    make_train_step,
    put_batch,
    put_state,
    warmup_sqrt_decay,
)

CONFIG = ModelConfig(vocab_size=75, embed_dim=32, num_layers=2, num_heads=4, ffn_dim=48)
TOKENIZER = KmerTokenizer(3, uppercase=True)
STEPS, BATCH, LENGTH = 3, 16, 24


def losses(fasta: str, mesh) -> dict:
    corpus = GenomeCorpus.from_fasta([fasta], validation_fraction=0.0)
    model = NucleotideTransformer(CONFIG, key=jr.key(0))
    optimizer = codon_nt_optimizer(
        warmup_sqrt_decay(init_value=1e-3, peak_value=3e-3, warmup_steps=2)
    )
    opt_state = optimizer.init(eqx.filter(model, eqx.is_array))
    model, opt_state = put_state((model, opt_state), mesh)
    step = make_train_step(optimizer, MaskedLM.for_tokenizer(TOKENIZER), dtype=jnp.float32)
    out = []
    for i in range(STEPS):
        tokens = corpus.batch(0, i, BATCH, window_tokens=LENGTH, tokenizer=TOKENIZER)
        tokens = put_batch(tokens.reshape(2, BATCH // 2, LENGTH), mesh)
        model, opt_state, metrics = step(model, opt_state, tokens, jr.fold_in(jr.key(1), i))
        out.append(float(metrics.loss.loss_sum))
    shards = {str(x.sharding.spec) for x in jax.tree.leaves(eqx.filter(model, eqx.is_array))}
    return {"losses": out, "shardings": sorted(shards)}


if __name__ == "__main__":
    if sys.argv[1] == "devices":
        fasta = sys.argv[2]
        print(
            json.dumps(
                {
                    "one": losses(fasta, make_mesh(1, jax.devices()[:1])),
                    "data": losses(fasta, make_mesh(1)),
                    "fsdp": losses(fasta, make_mesh(4)),
                    "devices": jax.device_count(),
                }
            )
        )
    else:
        fasta, out, index, count, port = sys.argv[2:]
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        from codonnt_eqx.cli._main import main

        sys.exit(
            main(
                [
                    "pretrain",
                    fasta,
                    "--out",
                    out,
                    *("--layers 2 --width 32 --heads 4 --ffn 48 --seq-length 24").split(),
                    *("--tokens-per-batch 192 --micro-batch 4 --steps 3 --warmup-steps 2").split(),
                    *("--log-every 1 --eval-every 3 --eval-windows 8 --dtype float32").split(),
                    *("--validation-fraction 0.05 --init-lr 1e-3 --peak-lr 3e-3").split(),
                    *(
                        ["--coordinator", f"localhost:{port}", "--num-processes", count]
                        if int(count) > 1
                        else []
                    ),
                    *(["--process-id", index] if int(count) > 1 else []),
                ]
            )
        )
