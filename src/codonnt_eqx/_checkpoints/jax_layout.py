"""InstaDeep's JAX layout: jax_model/hyperparams.json and jax_model/pytree_ckpt.joblib (a flat
Haiku dict `module/path -> {param: array}`), in the published or the newer module naming."""

from __future__ import annotations

import json
import pathlib
import re

import numpy as np

from .._config import ModelConfig
from .._tokenizers import KmerTokenizer
from ._build import Name, build_model
from ._errors import CheckpointError
from .safe_pickle import load_joblib_file

# Module-path patterns (matched at the end of the path, whatever the prefix) -> model names.
_LAYER = r"attention_layer_(\d+)/~/"
_MODULES = [
    (re.compile(r"positional_embeddings/~/embed$"), ".position_embed"),
    (re.compile(r"(^|/)~/embed$"), ".embed"),
    (re.compile(r"~/emb_layer_norm_before$"), ".emb_layer_norm_before"),
    (re.compile(_LAYER + r"(?:mha|self_attention)/query$"), ".blocks.attention.query"),
    (re.compile(_LAYER + r"(?:mha|self_attention)/key$"), ".blocks.attention.key"),
    (re.compile(_LAYER + r"(?:mha|self_attention)/value$"), ".blocks.attention.value"),
    (re.compile(_LAYER + r"(?:mha|self_attention)/(?:mha_)?output$"), ".blocks.attention.output"),
    (re.compile(_LAYER + r"(?:mha|self_attention)_layer_norm$"), ".blocks.attention_norm"),
    (re.compile(_LAYER + r"final_layer_norm$"), ".blocks.ffn_norm"),
    (re.compile(_LAYER + r"fc1$"), ".blocks.ffn.fc1"),
    (re.compile(_LAYER + r"fc2$"), ".blocks.ffn.fc2"),
    (re.compile(r"roberta_lm_head/~/emb_layer_norm_after$"), ".final_norm"),
    (re.compile(r"roberta_lm_head/~/lm_head_fc_1$"), ".lm_head.dense"),
    (re.compile(r"roberta_lm_head/~/lm_head_layer_norm$"), ".lm_head.norm"),
    (re.compile(r"roberta_lm_head/~/lm_final_fc$"), ".lm_head.decoder"),
]
# Haiku parameter -> (our parameter, transpose?): Linear w is [in, out], ours [out, in].
_PARAMS = {
    "w": ("weight", True),
    "b": ("bias", False),
    "scale": ("weight", False),
    "offset": ("bias", False),
    "embeddings": (None, False),
}


def _config_from_hyperparams(h: dict, vocab_size: int, source: str) -> ModelConfig:
    if h.get("add_bias_kv", False):
        raise CheckpointError(f"{source}: add_bias_kv=True is not supported")
    activation = h.get("ffn_activation_name", "gelu-no-approx")
    if activation not in ("gelu-no-approx", "gelu", "swish", "silu"):
        raise CheckpointError(f"{source}: unsupported ffn_activation_name {activation!r}")
    if activation == "gelu":
        raise CheckpointError(f"{source}: tanh-approximated gelu is not supported")
    rotary = h.get("use_rotary_embedding", False)
    try:
        return ModelConfig(
            vocab_size=vocab_size,
            embed_dim=h["embed_dim"],
            num_layers=h["num_layers"],
            num_heads=h["attention_heads"],
            ffn_dim=h["ffn_embed_dim"],
            key_dim=h.get("key_dim"),
            positional_embedding="rotary" if rotary else "learned",
            max_positions=h.get("max_positions", 1000),
            rotary_rescaling=h.get("rescaling_factor") or 1.0,
            use_glu=h.get("use_glu_in_ffn", False),
            ffn_activation="gelu" if activation.startswith("gelu") else "swish",
            add_bias_ffn=h.get("add_bias_ffn", True),
            emb_layer_norm_before=h.get("emb_layer_norm_before", False),
            token_dropout=h.get("token_dropout", False),
            masking_ratio=h.get("masking_ratio", 0.15),
            masking_prob=h.get("masking_prob", 0.8),
            embed_scale=h.get("embed_scale", 1.0),
            layer_norm_eps=1e-5,
            pad_token_id=1,
            mask_token_id=2,
            k_for_kmers=h["k_for_kmers"],
        )
    except KeyError as e:
        raise CheckpointError(f"{source}: hyperparams.json lacks {e.args[0]!r}") from None


def load_jax(path: pathlib.Path, dtype=None, **tokenizer_options):
    folder = path / "jax_model"
    hyper_file, params_file = folder / "hyperparams.json", folder / "pytree_ckpt.joblib"
    try:
        hyper = json.loads(hyper_file.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{hyper_file}: unreadable ({e})") from e
    params = load_joblib_file(params_file)
    if not isinstance(params, dict):
        raise CheckpointError(f"{params_file}: expected a dict of modules")
    arrays: dict[Name, np.ndarray] = {}
    key_names: dict[Name, str] = {}
    for module, values in params.items():
        target = next(((n, p) for p, n in _MODULES if p.search(module)), None)
        if target is None or not isinstance(values, dict):
            raise CheckpointError(f"{params_file}: unexpected module {module!r}")
        name, pattern = target
        match = pattern.search(module)
        layer = int(match.group(1)) if name.startswith(".blocks.") else None
        for param, array in values.items():
            if param not in _PARAMS:
                raise CheckpointError(f"{params_file}: unexpected parameter {module}/{param}")
            ours, transpose = _PARAMS[param]
            full = name if ours is None else f"{name}.{ours}"
            array = np.asarray(array)
            arrays[(full, layer)] = array.T if transpose and array.ndim == 2 else array
            key_names[(full, layer)] = f"{module}/{param}"
    del params  # the arrays now live only in `arrays`, which the model consumes as it fills
    embed = arrays.get((".embed", None))
    if embed is None:
        raise CheckpointError(f"{params_file}: no token embedding (…/~/embed)")
    k = hyper.get("k_for_kmers")
    if not isinstance(k, int):
        raise CheckpointError(f"{hyper_file}: k_for_kmers missing or not an integer")
    rows = embed.shape[0]
    layout = {4**k + 11: "v2", 4**k + 9: "v1"}.get(rows)
    if layout is None:
        raise CheckpointError(
            f"{params_file}: an embedding of {rows} rows fits no k={k} vocabulary "
            f"({4**k + 11} for v2, {4**k + 9} for v1)"
        )
    tokenizer = KmerTokenizer(k, layout=layout, **tokenizer_options)
    config = _config_from_hyperparams(hyper, rows, str(hyper_file))
    describe = lambda name: key_names.get(name) or _published_name(*name)  # noqa: E731
    return build_model(config, arrays, str(params_file), describe, dtype), tokenizer


_PUBLISHED = {
    ".embed": "esm_transformer/~/embed/embeddings",
    ".position_embed": "esm_transformer/~/esm_learned_positional_embeddings/~/embed/embeddings",
    ".emb_layer_norm_before": "esm_transformer/~/emb_layer_norm_before",
    ".blocks.attention.query": "mha/query",
    ".blocks.attention.key": "mha/key",
    ".blocks.attention.value": "mha/value",
    ".blocks.attention.output": "mha/mha_output",
    ".blocks.attention_norm": "mha_layer_norm",
    ".blocks.ffn_norm": "final_layer_norm",
    ".blocks.ffn.fc1": "fc1",
    ".blocks.ffn.fc2": "fc2",
    ".final_norm": "esm_transformer/~/esm_roberta_lm_head/~/emb_layer_norm_after",
    ".lm_head.dense": "esm_transformer/~/esm_roberta_lm_head/~/lm_head_fc_1",
    ".lm_head.norm": "esm_transformer/~/esm_roberta_lm_head/~/lm_head_layer_norm",
    ".lm_head.decoder": "esm_transformer/~/esm_roberta_lm_head/~/lm_final_fc",
}


def _published_name(name: str, layer: int | None) -> str:
    """Where the published naming keeps one of our parameters (for error messages)."""
    if name in _PUBLISHED:
        return _PUBLISHED[name]
    module, _, param = name.rpartition(".")
    haiku = {"weight": "w", "bias": "b"}[param]
    if "norm" in module:
        haiku = {"weight": "scale", "bias": "offset"}[param]
    path = _PUBLISHED[module]
    if layer is not None:
        path = f"esm_transformer/attention_layer_{layer}/~/{path}"
    return f"{path}/{haiku}"
