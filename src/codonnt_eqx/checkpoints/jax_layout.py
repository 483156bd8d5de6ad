"""InstaDeep's JAX layout: jax_model/hyperparams.json and jax_model/pytree_ckpt.joblib (a flat
Haiku dict `module/path -> {param: array}`), in the published or the newer module naming."""

from __future__ import annotations

import pathlib
import re
from typing import Literal

import numpy as np

from ..tokenizers import MAX_K, KmerTokenizer
from ._build import Name, build_model
from ._errors import CheckpointError
from ._metadata import JsonObject, embedding_rows, make_config, read_json, regular_file
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


# ModelConfig field -> the hyperparams.json key it comes from, for error messages.
_JAX_KEYS = {
    "embed_dim": "embed_dim",
    "num_layers": "num_layers",
    "num_heads": "attention_heads",
    "ffn_dim": "ffn_embed_dim",
    "key_dim": "key_dim",
    "max_positions": "max_positions",
    "rotary_rescaling": "rescaling_factor",
    "use_glu": "use_glu_in_ffn",
    "add_bias_ffn": "add_bias_ffn",
    "emb_layer_norm_before": "emb_layer_norm_before",
    "token_dropout": "token_dropout",
    "masking_ratio": "masking_ratio",
    "masking_prob": "masking_prob",
    "embed_scale": "embed_scale",
    "k_for_kmers": "k_for_kmers",
}


def _read_hyperparams(file: pathlib.Path) -> dict:
    """Every hyperparams.json value this loader uses, type-checked, by ModelConfig field name
    (defaults: the original's, for the keys older files lack)."""
    h = JsonObject(read_json(file), file)
    if h.bool("add_bias_kv", False):
        raise CheckpointError(f"{file}: add_bias_kv=True is not supported")
    activation = h.str(
        "ffn_activation_name", "gelu-no-approx", choices=("gelu-no-approx", "gelu", "swish", "silu")
    )
    if activation == "gelu":
        raise CheckpointError(f"{file}: tanh-approximated gelu is not supported")
    rescaling = h.number("rescaling_factor", None, nullable=True)  # null: plain rotary
    k = h.int("k_for_kmers", minimum=1)
    if k > MAX_K:  # checked before anything computes 4**k, which for k = 10^9 never ends
        raise CheckpointError(f"{file}: k_for_kmers is {k}, expected at most {MAX_K}")
    return dict(
        embed_dim=h.int("embed_dim"),
        num_layers=h.int("num_layers"),
        num_heads=h.int("attention_heads"),
        ffn_dim=h.int("ffn_embed_dim"),
        key_dim=h.int("key_dim", None, nullable=True),
        positional_embedding="rotary" if h.bool("use_rotary_embedding", False) else "learned",
        max_positions=h.int("max_positions", 1000),
        rotary_rescaling=1.0 if rescaling is None else rescaling,
        use_glu=h.bool("use_glu_in_ffn", False),
        ffn_activation="gelu" if activation.startswith("gelu") else "swish",
        add_bias_ffn=h.bool("add_bias_ffn", True),
        emb_layer_norm_before=h.bool("emb_layer_norm_before", False),
        token_dropout=h.bool("token_dropout", False),
        masking_ratio=h.number("masking_ratio", 0.15),
        masking_prob=h.number("masking_prob", 0.8),
        embed_scale=h.number("embed_scale", 1.0),
        k_for_kmers=k,
    )


def _read_params(file: pathlib.Path) -> tuple[dict[Name, np.ndarray], dict[Name, str]]:
    """Our parameter names -> arrays (and -> the file's own names, for messages)."""
    params = load_joblib_file(regular_file(file))
    if not isinstance(params, dict):
        raise CheckpointError(f"{file}: expected a dict of modules, got {type(params).__name__}")
    arrays: dict[Name, np.ndarray] = {}
    key_names: dict[Name, str] = {}
    for module, values in params.items():
        target = None
        if isinstance(module, str):
            target = next(((n, p) for p, n in _MODULES if p.search(module)), None)
        if target is None or not isinstance(values, dict):
            raise CheckpointError(f"{file}: unexpected module {module!r}")
        name, pattern = target
        match = pattern.search(module)
        assert match is not None  # the pattern matched just above
        layer = int(match.group(1)) if name.startswith(".blocks.") else None
        for param, array in values.items():
            if param not in _PARAMS:
                raise CheckpointError(f"{file}: unexpected parameter {module}/{param!r}")
            if not isinstance(array, np.ndarray):
                raise CheckpointError(f"{file}: {module}/{param} is not an array")
            ours, transpose = _PARAMS[param]
            full = (name if ours is None else f"{name}.{ours}", layer)
            if full in key_names:  # e.g. the published and the newer name of one module
                raise CheckpointError(
                    f"{file}: {key_names[full]} and {module}/{param} are the same parameter"
                )
            arrays[full] = array.T if transpose and array.ndim == 2 else array
            key_names[full] = f"{module}/{param}"
    return arrays, key_names


def load_jax(path: pathlib.Path, dtype=None, **tokenizer_options):
    folder = path / "jax_model"
    hyper_file, params_file = folder / "hyperparams.json", folder / "pytree_ckpt.joblib"
    fields = _read_hyperparams(hyper_file)
    k = fields["k_for_kmers"]
    arrays, key_names = _read_params(params_file)
    embed = arrays.get((".embed", None))
    if embed is None:
        raise CheckpointError(f"{params_file}: no token embedding (…/~/embed)")
    rows = int(embed.shape[0]) if embed.ndim else -1
    layouts: dict[int, Literal["v1", "v2"]] = {
        embedding_rows(k, "v2"): "v2",
        embedding_rows(k, "v1"): "v1",
    }
    layout = layouts.get(rows)
    if layout is None:
        raise CheckpointError(
            f"{params_file}: an embedding of {rows} rows fits no k={k} vocabulary "
            f"({embedding_rows(k, 'v2')} for v2, {embedding_rows(k, 'v1')} for v1)"
        )
    tokenizer = KmerTokenizer(k, layout=layout, **tokenizer_options)
    config = make_config(
        hyper_file,
        _JAX_KEYS,
        **fields,
        vocab_size=rows,
        layer_norm_eps=1e-5,
        pad_token_id=tokenizer.pad_id,
        mask_token_id=tokenizer.mask_id,
    )
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
