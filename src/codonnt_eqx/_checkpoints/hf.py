"""The Hugging Face (transformers ESM) layout: config.json, vocab.txt and the weights in
model.safetensors or pytorch_model.bin, possibly sharded with an index json."""

from __future__ import annotations

import json
import pathlib
import re

import ml_dtypes
import numpy as np
from safetensors.numpy import save_file

from .._config import ModelConfig
from .._model import NucleotideTransformer
from .._tokenizers import KmerTokenizer
from ._build import Name, build_model, parameter_arrays
from ._errors import CheckpointError
from .safe_pickle import load_torch_file

_GLOBAL = {
    "esm.embeddings.word_embeddings.weight": ".embed",
    "esm.embeddings.position_embeddings.weight": ".position_embed",
    "esm.embeddings.layer_norm.weight": ".emb_layer_norm_before.weight",
    "esm.embeddings.layer_norm.bias": ".emb_layer_norm_before.bias",
    "esm.encoder.emb_layer_norm_after.weight": ".final_norm.weight",
    "esm.encoder.emb_layer_norm_after.bias": ".final_norm.bias",
    "lm_head.dense.weight": ".lm_head.dense.weight",
    "lm_head.dense.bias": ".lm_head.dense.bias",
    "lm_head.layer_norm.weight": ".lm_head.norm.weight",
    "lm_head.layer_norm.bias": ".lm_head.norm.bias",
    "lm_head.decoder.weight": ".lm_head.decoder.weight",
    "lm_head.bias": ".lm_head.decoder.bias",
}
_LAYER = {
    "attention.self.query": ".blocks.attention.query",
    "attention.self.key": ".blocks.attention.key",
    "attention.self.value": ".blocks.attention.value",
    "attention.output.dense": ".blocks.attention.output",
    "attention.LayerNorm": ".blocks.attention_norm",
    "intermediate.dense": ".blocks.ffn.fc1",
    "output.dense": ".blocks.ffn.fc2",
    "LayerNorm": ".blocks.ffn_norm",
}
_LAYER_KEY = re.compile(r"esm\.encoder\.layer\.(\d+)\.(.+)\.(weight|bias|gamma|beta)$")
# transformers >= 5 writes the parameters of modules named "LayerNorm" as gamma/beta.
_LEGACY_PARAMS = {"gamma": "weight", "beta": "bias"}
# Present in transformers' checkpoints, not part of the masked-LM forward pass.
_IGNORED = re.compile(
    r"(rotary_embeddings\.inv_freq|esm\.contact_head\.|position_ids$|lm_head\.decoder\.bias$)"
)
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def _hf_to_name(key: str) -> Name | None:
    if key in _GLOBAL:
        return _GLOBAL[key], None
    match = _LAYER_KEY.match(key)
    if match and match.group(2) in _LAYER:
        param = _LEGACY_PARAMS.get(match.group(3), match.group(3))
        return f"{_LAYER[match.group(2)]}.{param}", int(match.group(1))
    return None


def _name_to_hf(name: str, layer: int | None) -> str:
    if layer is None:
        return next(k for k, v in _GLOBAL.items() if v == name)
    module, _, param = name.rpartition(".")
    hf = next(k for k, v in _LAYER.items() if v == module)
    return f"esm.encoder.layer.{layer}.{hf}.{param}"


def _read_weights(path: pathlib.Path) -> tuple[dict, str]:
    for name in _WEIGHT_FILES:
        index = path / f"{name}.index.json"
        if index.exists():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            tensors: dict = {}
            for shard in shards:
                tensors.update(_read_weight_file(path / shard))
            return tensors, str(index)
        if (path / name).exists():
            return _read_weight_file(path / name), str(path / name)
    raise CheckpointError(f"{path}: no model.safetensors or pytorch_model.bin (or their index)")


_SAFETENSORS_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "BF16": ml_dtypes.bfloat16,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}


class _LazyTensor:
    """A safetensors entry read with plain file reads (no mmap) when the model is filled, so
    each array is freed once converted and peak memory stays near one copy of the weights;
    safetensors' own mmap-based reader would add the mapped file to the resident set."""

    def __init__(self, file: pathlib.Path, key: str, info: dict, data_start: int):
        self._file, self._key = file, key
        try:
            self.dtype = np.dtype(_SAFETENSORS_DTYPES[info["dtype"]])
            self.shape = tuple(info["shape"])
            start, end = info["data_offsets"]
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{file}: bad header entry for {key} ({e!r})") from None
        self._offset, self._nbytes = data_start + start, end - start
        if self._nbytes != self.dtype.itemsize * int(np.prod(self.shape, dtype=np.int64)):
            raise CheckpointError(f"{file}: {key} has {self._nbytes} bytes for shape {self.shape}")

    def load(self) -> np.ndarray:
        array = np.empty(self.shape, self.dtype)
        with open(self._file, "rb") as f:
            f.seek(self._offset)
            if f.readinto(memoryview(array).cast("B")) != self._nbytes:
                raise CheckpointError(f"{self._file}: truncated ({self._key} is cut)")
        return array


def _read_safetensors_header(file: pathlib.Path) -> dict[str, _LazyTensor]:
    with open(file, "rb") as f:
        head = f.read(8)
        size = int.from_bytes(head, "little") if len(head) == 8 else -1
        try:
            if not 0 < size < 100_000_000:
                raise ValueError(f"header size {size}")
            header = json.loads(f.read(size))
        except (ValueError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{file}: corrupt safetensors file ({e})") from None
        total = f.seek(0, 2)
    tensors = {
        key: _LazyTensor(file, key, info, 8 + size)
        for key, info in header.items()
        if key != "__metadata__"
    }
    if any(t._offset + t._nbytes > total for t in tensors.values()):
        raise CheckpointError(f"{file}: corrupt safetensors file (truncated)")
    return tensors


def _read_weight_file(file: pathlib.Path) -> dict:
    """Key -> NumPy array, or `_LazyTensor` for safetensors."""
    if not file.exists():
        raise CheckpointError(f"{file}: listed in the index but missing")
    if file.suffix == ".safetensors":
        return _read_safetensors_header(file)
    return load_torch_file(file)


def _config_from_hf(cfg: dict, tensors: dict, source: str) -> ModelConfig:
    if cfg.get("model_type") != "esm":
        raise CheckpointError(f"{source}: model_type is {cfg.get('model_type')!r}, expected 'esm'")
    try:
        d, ffn = cfg["hidden_size"], cfg["intermediate_size"]
        fc1 = tensors.get("esm.encoder.layer.0.intermediate.dense.weight")
        # InstaDeep's v2 models gate with swish whatever hidden_act says; ESM uses exact GELU.
        use_glu = fc1 is not None and fc1.shape[0] == 2 * ffn
        learned = cfg.get("position_embedding_type", "absolute") != "rotary"
        pad = cfg["pad_token_id"]
        return ModelConfig(
            vocab_size=cfg["vocab_size"],
            embed_dim=d,
            num_layers=cfg["num_hidden_layers"],
            num_heads=cfg["num_attention_heads"],
            ffn_dim=ffn,
            positional_embedding="learned" if learned else "rotary",
            max_positions=cfg["max_position_embeddings"] - (pad + 1 if learned else 0),
            rotary_rescaling=cfg.get("codonnt_eqx_rotary_rescaling", 1.0),
            use_glu=use_glu,
            ffn_activation="swish" if use_glu else "gelu",
            add_bias_ffn=cfg.get("add_bias_fnn", True),
            emb_layer_norm_before=bool(cfg.get("emb_layer_norm_before", False)),
            token_dropout=bool(cfg.get("token_dropout", False)),
            layer_norm_eps=cfg.get("layer_norm_eps", 1e-12),
            pad_token_id=pad,
            mask_token_id=cfg["mask_token_id"],
        )
    except KeyError as e:
        raise CheckpointError(f"{source}: config.json lacks {e.args[0]!r}") from None


def load_hf(path: pathlib.Path, dtype=None, **tokenizer_options):
    config_file = path / "config.json"
    try:
        cfg = json.loads(config_file.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{config_file}: unreadable ({e})") from e
    tokenizer = KmerTokenizer.from_vocab_file(path / "vocab.txt", **tokenizer_options)
    tensors, source = _read_weights(path)
    embed = tensors.get("esm.embeddings.word_embeddings.weight")
    if (
        "lm_head.decoder.weight" not in tensors
        and embed is not None
        and cfg.get("tie_word_embeddings", True)
    ):
        tensors["lm_head.decoder.weight"] = embed  # tied: transformers saves one copy
    config = _config_from_hf(cfg, tensors, str(config_file))
    config = config.replace(k_for_kmers=tokenizer.k)
    if tokenizer.vocab_size not in (config.vocab_size, config.vocab_size + 2):
        raise CheckpointError(
            f"{path / 'vocab.txt'}: {tokenizer.vocab_size} tokens, but config.json says "
            f"vocab_size {config.vocab_size}"
        )
    if (tokenizer.pad_id, tokenizer.mask_id) != (config.pad_token_id, config.mask_token_id):
        raise CheckpointError(f"{config_file}: pad/mask ids disagree with vocab.txt")
    inv_freq = [k for k in tensors if k.endswith("rotary_embeddings.inv_freq")]
    if inv_freq:
        got = tensors[inv_freq[0]]
        got = np.asarray(got.load() if isinstance(got, _LazyTensor) else got, np.float64)
        dim = config.head_dim
        want = 1.0 / 10000.0 ** (np.arange(0, dim, 2) / dim)
        if got.shape != want.shape or not np.allclose(got, want, rtol=1e-4):
            raise CheckpointError(
                f"{source}: {inv_freq[0]} does not match plain rotary "
                f"embeddings with head size {dim}"
            )
    arrays, key_names = {}, {}
    for key, value in tensors.items():
        name = _hf_to_name(key)
        if name is None:
            if _IGNORED.search(key):
                continue
            raise CheckpointError(f"{source}: unexpected key {key}")
        arrays[name], key_names[name] = value, key
    del tensors
    describe = lambda name: key_names.get(name) or _name_to_hf(*name)  # noqa: E731
    return build_model(config, arrays, source, describe, dtype), tokenizer


def save_hf(model: NucleotideTransformer, tokenizer: KmerTokenizer, path: pathlib.Path) -> None:
    c = model.config
    if c.embed_scale != 1.0:
        raise CheckpointError("the Hugging Face layout has no embed_scale; it must be 1.0")
    path.mkdir(parents=True, exist_ok=True)
    learned = c.positional_embedding == "learned"
    config = {
        "architectures": ["EsmForMaskedLM"],
        "model_type": "esm",
        "vocab_size": c.vocab_size,
        "hidden_size": c.embed_dim,
        "num_hidden_layers": c.num_layers,
        "num_attention_heads": c.num_heads,
        "intermediate_size": c.ffn_dim,
        "hidden_act": "swish" if c.ffn_activation == "swish" else "gelu",
        "position_embedding_type": "absolute" if learned else "rotary",
        "max_position_embeddings": c.max_positions + (c.pad_token_id + 1 if learned else 0),
        "add_bias_fnn": c.add_bias_ffn,
        "emb_layer_norm_before": c.emb_layer_norm_before,
        "token_dropout": c.token_dropout,
        "layer_norm_eps": c.layer_norm_eps,
        "pad_token_id": c.pad_token_id,
        "mask_token_id": c.mask_token_id,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "is_folding_model": False,
        "tie_word_embeddings": False,
    }
    if c.rotary_rescaling != 1.0:
        config["codonnt_eqx_rotary_rescaling"] = c.rotary_rescaling
    if c.ffn_activation != ("swish" if c.use_glu else "gelu"):
        raise CheckpointError("the Hugging Face layout has GLU with swish or an MLP with GELU only")
    if c.head_dim * c.num_heads != c.embed_dim:
        raise CheckpointError("the Hugging Face layout needs key_dim = embed_dim / num_heads")
    tensors = {}
    for name, array in parameter_arrays(model).items():
        if name.startswith(".blocks."):
            for layer in range(c.num_layers):
                tensors[_name_to_hf(name, layer)] = np.ascontiguousarray(array[layer])
        else:
            tensors[_name_to_hf(name, None)] = np.ascontiguousarray(array)
    save_file(tensors, path / "model.safetensors", metadata={"format": "pt"})
    (path / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    tokenizer.save_vocab(path / "vocab.txt")
