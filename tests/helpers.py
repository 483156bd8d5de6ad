"""Shared test fixtures: small model configs with their tokenizers, perturbed models, token
batches, and a writer of InstaDeep's JAX checkpoint layout (also used by bench/)."""

import json

import equinox as eqx
import jax
import jax.random as jr
import numpy as np

from codonnt_eqx import KmerTokenizer, ModelConfig, NucleotideTransformer

V2 = ModelConfig(vocab_size=75, embed_dim=32, num_layers=2, num_heads=4, ffn_dim=48)
V2_RESCALED = V2.replace(rotary_rescaling=2.5, embed_scale=0.9, key_dim=6, layer_norm_eps=1e-3)
V1 = ModelConfig(
    vocab_size=25,
    embed_dim=32,
    num_layers=2,
    num_heads=4,
    ffn_dim=64,
    positional_embedding="learned",
    max_positions=40,
    use_glu=False,
    ffn_activation="gelu",
    add_bias_ffn=True,
    emb_layer_norm_before=True,
    token_dropout=True,
    k_for_kmers=2,
)
TOKENIZERS = {
    V2: KmerTokenizer(3),
    V2_RESCALED: KmerTokenizer(3),
    V1: KmerTokenizer(2, layout="v1"),
}


def perturbed_model(config, seed=0):
    """A model whose every parameter moved from its initial value (no unit scales, no zero
    biases)."""
    model = NucleotideTransformer(config, key=jr.key(seed))
    params, static = eqx.partition(model, eqx.is_array)
    leaves, treedef = jax.tree.flatten(params)
    keys = jr.split(jr.key(seed + 1), len(leaves))
    leaves = [x + 0.2 * jr.normal(k, x.shape) for x, k in zip(leaves, keys, strict=True)]
    return eqx.combine(jax.tree.unflatten(treedef, leaves), static)


def token_batch(config, seed=0, lengths=(31, 17, 8), mask_rate=0.15):
    rng = np.random.default_rng(seed)
    seqs = ["".join(rng.choice(list("ACGTN"), p=[0.24] * 4 + [0.04], size=n)) for n in lengths]
    tokens = TOKENIZERS[config].batch_encode(seqs, length=None)
    masked = (rng.random(tokens.shape) < mask_rate) & (tokens != 1) & (tokens != 3)
    return np.where(masked, config.mask_token_id, tokens).astype(np.int32)


def write_jax_layout(model, path, naming="published"):
    import joblib

    c = model.config
    if naming == "published":
        prefix, mha, mha_ln, head = (
            "esm_transformer",
            "mha",
            "mha_layer_norm",
            "esm_roberta_lm_head",
        )
    else:
        prefix, mha, mha_ln, head = (
            "nucleotide_transformer",
            "self_attention",
            "self_attention_layer_norm",
            "roberta_lm_head",
        )
    f = lambda x: np.asarray(x, np.float32)  # noqa: E731

    def linear(lin, i=None):
        w = lin.weight if i is None else lin.weight[i]
        out = {"w": f(w).T}
        if lin.bias is not None:
            out["b"] = f(lin.bias if i is None else lin.bias[i])
        return out

    def norm(ln, i=None):
        return {
            "scale": f(ln.weight if i is None else ln.weight[i]),
            "offset": f(ln.bias if i is None else ln.bias[i]),
        }

    params = {f"{prefix}/~/embed": {"embeddings": f(model.embed)}}
    if model.position_embed is not None:
        params[f"{prefix}/~/esm_learned_positional_embeddings/~/embed"] = {
            "embeddings": f(model.position_embed)
        }
    if model.emb_layer_norm_before is not None:
        params[f"{prefix}/~/emb_layer_norm_before"] = norm(model.emb_layer_norm_before)
    b = model.blocks
    for i in range(c.num_layers):
        layer = f"{prefix}/attention_layer_{i}/~/"
        for name, lin in (
            ("query", b.attention.query),
            ("key", b.attention.key),
            ("value", b.attention.value),
            ("mha_output", b.attention.output),
        ):
            params[f"{layer}{mha}/{name}"] = linear(lin, i)
        params[f"{layer}{mha_ln}"] = norm(b.attention_norm, i)
        params[f"{layer}final_layer_norm"] = norm(b.ffn_norm, i)
        params[f"{layer}fc1"] = linear(b.ffn.fc1, i)
        params[f"{layer}fc2"] = linear(b.ffn.fc2, i)
    params[f"{prefix}/~/{head}/~/emb_layer_norm_after"] = norm(model.final_norm)
    params[f"{prefix}/~/{head}/~/lm_head_fc_1"] = linear(model.lm_head.dense)
    params[f"{prefix}/~/{head}/~/lm_head_layer_norm"] = norm(model.lm_head.norm)
    params[f"{prefix}/~/{head}/~/lm_final_fc"] = linear(model.lm_head.decoder)
    v2 = c.positional_embedding == "rotary"
    hyper = {
        "k_for_kmers": c.k_for_kmers,
        "max_positions": c.max_positions,
        "embed_scale": 1.0,
        "emb_layer_norm_before": c.emb_layer_norm_before,
        "attention_heads": c.num_heads,
        "embed_dim": c.embed_dim,
        "ffn_embed_dim": c.ffn_dim,
        "num_layers": c.num_layers,
        "token_dropout": c.token_dropout,
        "masking_ratio": 0.15,
        "masking_prob": 0.8,
    }
    if v2:  # older (v1) files lack these keys: the loader must apply the original's defaults
        hyper |= {
            "positional_embedding": None,
            "add_bias_kv": False,
            "add_bias_ffn": False,
            "use_glu_in_ffn": True,
            "ffn_activation_name": "swish",
            "use_rotary_embedding": True,
        }
    (path / "jax_model").mkdir(parents=True)
    (path / "jax_model" / "hyperparams.json").write_text(json.dumps(hyper))
    joblib.dump(params, path / "jax_model" / "pytree_ckpt.joblib")
