"""The Hugging Face (transformers ESM) layout: config.json, vocab.txt and the weights in
model.safetensors or pytorch_model.bin, possibly sharded with an index json."""

from __future__ import annotations

import json
import os
import pathlib
import re
from typing import TypeGuard

import ml_dtypes
import numpy as np
from safetensors.numpy import save_file

from ..model import NucleotideTransformer
from ..tokenizers import (
    MAX_K,
    TOKENIZER_FILE,
    KmerTokenizer,
    Tokenizer,
    tokenizer_from_record,
    tokenizer_record,
)
from ._atomic import replace_files
from ._build import Name, build_model, parameter_arrays
from ._errors import CheckpointError
from ._metadata import JsonObject, embedding_rows, make_config, read_json, regular_file, unique_keys
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


# transformers' order: a single file before an index, safetensors before torch.
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_HF_FILES = ("config.json", "vocab.txt", TOKENIZER_FILE)


def _is_hub_blob(file: pathlib.Path) -> bool:
    """Whether `file` is in a Hugging Face hub cache's blob store, where the cache's snapshot
    folders (and older `--local-dir` downloads) link their files."""
    return file.parent.name == "blobs" and file.parent.parent.name.startswith("models--")


def _index_shards(index: pathlib.Path, folder: pathlib.Path) -> dict[pathlib.Path, set[str]]:
    """Shard file -> the keys the index places in it. A shard must be a file in `folder` (or a
    link into a hub cache): the index is untrusted and must not send the reader elsewhere."""
    weight_map = JsonObject(read_json(index), index).data.get("weight_map")
    if not isinstance(weight_map, dict):
        raise CheckpointError(f"{index}: weight_map is missing or not a JSON object")
    shards: dict[pathlib.Path, set[str]] = {}
    root = folder.resolve()
    for key, name in weight_map.items():
        relative = pathlib.PurePath(name) if isinstance(name, str) else None
        if relative is None or relative.is_absolute() or ".." in relative.parts or not name:
            raise CheckpointError(f"{index}: {key} is in {name!r}, not a file name in {folder}")
        file = folder / relative
        try:
            resolved = file.resolve()
        except (OSError, RuntimeError) as e:  # RuntimeError: a symlink loop
            raise CheckpointError(f"{index}: shard {name!r} does not resolve ({e})") from None
        if not (resolved.is_relative_to(root) or _is_hub_blob(resolved)):
            raise CheckpointError(f"{index}: shard {name!r} links to {resolved}, outside {folder}")
        shards.setdefault(file, set()).add(key)
    return shards


def _read_weights(path: pathlib.Path) -> tuple[dict, str]:
    for name in _WEIGHT_FILES:
        if (path / name).exists():
            return _read_weight_file(path / name), str(path / name)
        index = path / f"{name}.index.json"
        if index.exists():
            tensors: dict = {}
            for file, keys in _index_shards(index, path).items():
                shard = _read_weight_file(file)
                if shard.keys() != keys:  # each key is in one shard: the map is a dict
                    extra, absent = sorted(shard.keys() - keys), sorted(keys - shard.keys())
                    raise CheckpointError(
                        f"{file}: disagrees with {index.name} (holds unlisted {extra[:3]}, "
                        f"lacks listed {absent[:3]})"
                    )
                tensors.update(shard)
            return tensors, str(index)
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

    def __init__(self, file: pathlib.Path, key: str, info, data_start: int):
        self._file, self._key = file, key
        if not isinstance(info, dict):
            raise CheckpointError(f"{file}: bad header entry for {key} ({info!r})")
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if dtype not in _SAFETENSORS_DTYPES:
            raise CheckpointError(f"{file}: {key} has dtype {dtype!r}, not one this reader knows")
        if not (isinstance(shape, list) and all(type(n) is int and n >= 0 for n in shape)):
            raise CheckpointError(f"{file}: {key} has shape {shape!r}")
        if not (
            isinstance(offsets, list)
            and len(offsets) == 2
            and all(type(n) is int for n in offsets)
            and 0 <= offsets[0] <= offsets[1]
        ):
            raise CheckpointError(f"{file}: {key} has data_offsets {offsets!r}")
        self.dtype, self.shape = np.dtype(_SAFETENSORS_DTYPES[dtype]), tuple(shape)
        self.start, self.end = offsets
        self._offset, self._nbytes = data_start + self.start, self.end - self.start
        if self._nbytes != self.dtype.itemsize * int(np.prod(self.shape, dtype=object)):
            raise CheckpointError(f"{file}: {key} has {self._nbytes} bytes for shape {self.shape}")

    def load(self) -> np.ndarray:
        array = np.empty(self.shape, self.dtype)
        if not self._nbytes:
            return array  # memoryview cannot cast an empty array
        with open(self._file, "rb") as f:
            f.seek(self._offset)
            # bytes through a uint8 view: the buffer protocol has no bfloat16 ("E") format
            if f.readinto(array.reshape(-1).view(np.uint8).data) != self._nbytes:
                raise CheckpointError(f"{self._file}: truncated ({self._key} is cut)")
        return array


def _read_safetensors_header(file: pathlib.Path) -> dict[str, _LazyTensor]:
    try:
        with open(file, "rb") as f:
            head = f.read(8)
            size = int.from_bytes(head, "little") if len(head) == 8 else -1
            if not 0 < size < 100_000_000:
                raise ValueError(f"header size {size}")
            header = json.loads(f.read(size), object_pairs_hook=unique_keys)
            total = f.seek(0, 2)
    except OSError as e:
        raise CheckpointError(f"{file}: unreadable ({e})") from None
    except (ValueError, RecursionError) as e:
        raise CheckpointError(f"{file}: corrupt safetensors file ({e})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{file}: corrupt safetensors file (the header is not an object)")
    tensors = {
        key: _LazyTensor(file, key, info, 8 + size)
        for key, info in header.items()
        if key != "__metadata__"
    }
    # safetensors' own rule: the tensors tile the data area, no gaps, overlaps or extra bytes.
    position = 0
    for tensor in sorted(tensors.values(), key=lambda t: (t.start, t.end)):
        if tensor.start != position:
            how = "overlaps another" if tensor.start < position else "leaves a gap"
            raise CheckpointError(f"{file}: corrupt safetensors file ({tensor._key} {how})")
        position = tensor.end
    if 8 + size + position != total:
        how = "truncated" if 8 + size + position > total else "bytes after the last tensor"
        raise CheckpointError(f"{file}: corrupt safetensors file ({how})")
    return tensors


def _read_weight_file(file: pathlib.Path) -> dict:
    """Key -> a tensor with `shape`, `dtype` and `load()` (read when the model is filled)."""
    regular_file(file)
    if file.suffix == ".safetensors":
        return _read_safetensors_header(file)
    return load_torch_file(file)


# ModelConfig field -> the config.json key it comes from, for error messages.
_HF_KEYS = {
    "vocab_size": "vocab_size",
    "embed_dim": "hidden_size",
    "num_layers": "num_hidden_layers",
    "num_heads": "num_attention_heads",
    "ffn_dim": "intermediate_size",
    "max_positions": "max_position_embeddings",
    "rotary_rescaling": "codonnt_eqx_rotary_rescaling",
    "add_bias_ffn": "add_bias_fnn",
    "emb_layer_norm_before": "emb_layer_norm_before",
    "token_dropout": "token_dropout",
    "layer_norm_eps": "layer_norm_eps",
    "pad_token_id": "pad_token_id",
    "mask_token_id": "mask_token_id",
}


def _read_hf_config(file: pathlib.Path) -> dict:
    """Every config.json value this loader uses, type-checked, by ModelConfig field name."""
    cfg = JsonObject(read_json(file), file)
    model_type = cfg.data.get("model_type")
    if model_type != "esm":
        raise CheckpointError(f"{file}: model_type is {model_type!r}, expected 'esm'")
    if cfg.bool("is_folding_model", False):
        raise CheckpointError(f"{file}: an ESMFold model, not a masked language model")
    position = cfg.str("position_embedding_type", "absolute", choices=("absolute", "rotary"))
    learned = position == "absolute"
    pad, max_positions = cfg.int("pad_token_id"), cfg.int("max_position_embeddings")
    if learned:  # ESM's learned positions start after pad_token_id
        max_positions -= pad + 1
        if max_positions < 1:
            raise CheckpointError(
                f"{file}: max_position_embeddings {max_positions + pad + 1} leaves no positions "
                f"after the first pad_token_id + 1 = {pad + 1}"
            )
    return dict(
        vocab_size=cfg.int("vocab_size"),
        embed_dim=cfg.int("hidden_size"),
        num_layers=cfg.int("num_hidden_layers"),
        num_heads=cfg.int("num_attention_heads"),
        ffn_dim=cfg.int("intermediate_size"),
        positional_embedding="learned" if learned else "rotary",
        max_positions=max_positions,
        rotary_rescaling=cfg.number("codonnt_eqx_rotary_rescaling", 1.0),
        add_bias_ffn=cfg.bool("add_bias_fnn", True),
        emb_layer_norm_before=bool(cfg.bool("emb_layer_norm_before", False, nullable=True)),
        token_dropout=cfg.bool("token_dropout", False),
        layer_norm_eps=cfg.number("layer_norm_eps", 1e-12),
        pad_token_id=pad,
        mask_token_id=cfg.int("mask_token_id"),
        tie_word_embeddings=cfg.bool("tie_word_embeddings", True),
    )


def _read_vocab(file: pathlib.Path, options: dict) -> KmerTokenizer:
    """The tokenizer of vocab.txt, its size checked first: KmerTokenizer(k) makes all 4^k + 11
    tokens, and one line of twelve bases would otherwise cost minutes and gigabytes."""
    regular_file(file)
    try:
        with open(file, encoding="utf-8") as f:
            tokens = [line.rstrip("\r\n") for line in f]
    except OSError as e:
        raise CheckpointError(f"{file}: unreadable ({e})") from None
    except ValueError as e:  # not UTF-8
        raise CheckpointError(f"{file}: not a k-mer vocabulary ({e})") from None
    while tokens and tokens[-1] == "":
        tokens.pop()
    k = next((k for k in range(1, MAX_K + 1) if 4**k + 11 == len(tokens)), None)
    kmers = {len(t) for t in tokens if not t.startswith("<")} - {1}
    if k is None or not kmers <= {k}:
        raise CheckpointError(
            f"{file}: not a k-mer vocabulary ({len(tokens)} tokens of lengths "
            f"{sorted(kmers)[:5]}; one has 4^k + 11 tokens, its k-mers k bases, k <= {MAX_K})"
        )
    del tokens
    try:
        return KmerTokenizer.from_vocab_file(file, **options)
    except OSError as e:
        raise CheckpointError(f"{file}: unreadable ({e})") from None
    except ValueError as e:  # not an NT k-mer vocabulary
        message = str(e)
        raise CheckpointError(
            message if message.startswith(str(file)) else f"{file}: {message}"
        ) from None


def _read_tokenizer(file: pathlib.Path, options: dict, classes) -> Tokenizer:
    """The tokenizer `save_hf` described in `codonnt_tokenizer.json` (any `Tokenizer`, by its
    class's import path), with the caller's `options` (`uppercase`, ...) over its config."""
    record = read_json(regular_file(file))
    if isinstance(record, dict) and isinstance(record.get("config"), dict):
        record = {**record, "config": {**record["config"], **options}}
    try:
        return tokenizer_from_record(record, str(file), classes=classes)
    except ValueError as e:
        raise CheckpointError(str(e)) from None


def load_hf(path: pathlib.Path, dtype=None, tokenizer_classes=(), **tokenizer_options):
    config_file, vocab_file = path / "config.json", path / "vocab.txt"
    fields = _read_hf_config(config_file)
    tie = fields.pop("tie_word_embeddings")
    if (path / TOKENIZER_FILE).exists():
        tokenizer = _read_tokenizer(path / TOKENIZER_FILE, tokenizer_options, tokenizer_classes)
        source, rows, k = path / TOKENIZER_FILE, tokenizer.vocab_size, getattr(tokenizer, "k", 1)
        if fields["vocab_size"] != rows:
            raise CheckpointError(
                f"{source}: {rows} tokens, but config.json says vocab_size {fields['vocab_size']}"
            )
    else:
        tokenizer = _read_vocab(vocab_file, tokenizer_options)
        source, k = vocab_file, tokenizer.k
        # The vocabulary must be the one the embedding rows were trained with: a v1 vocab.txt
        # beside v2 weights would shift every id by 2, and nothing else would notice.
        rows = embedding_rows(tokenizer.k, tokenizer.layout)
        if fields["vocab_size"] != rows:
            raise CheckpointError(
                f"{vocab_file}: {tokenizer.vocab_size} tokens, but config.json says vocab_size "
                f"{fields['vocab_size']} (a {tokenizer.layout} vocabulary with k={tokenizer.k} "
                f"goes with {rows} embedding rows)"
            )
    if (tokenizer.pad_id, tokenizer.mask_id) != (fields["pad_token_id"], fields["mask_token_id"]):
        raise CheckpointError(f"{config_file}: pad/mask ids disagree with {source.name}")
    tensors, source = _read_weights(path)
    embed = tensors.get("esm.embeddings.word_embeddings.weight")
    if "lm_head.decoder.weight" not in tensors and embed is not None and tie:
        tensors["lm_head.decoder.weight"] = embed  # tied: transformers saves one copy
    fc1 = tensors.get("esm.encoder.layer.0.intermediate.dense.weight")
    # InstaDeep's v2 models gate with swish whatever hidden_act says; ESM uses exact GELU.
    use_glu = fc1 is not None and len(fc1.shape) == 2 and fc1.shape[0] == 2 * fields["ffn_dim"]
    config = make_config(
        config_file,
        _HF_KEYS,
        **fields,
        use_glu=use_glu,
        ffn_activation="swish" if use_glu else "gelu",
        k_for_kmers=k,
    )
    inv_freq = [k for k in tensors if k.endswith("rotary_embeddings.inv_freq")]
    if inv_freq:
        got = np.asarray(tensors[inv_freq[0]].load(), np.float64)
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
        if name in key_names:  # e.g. both LayerNorm.weight and LayerNorm.gamma
            raise CheckpointError(f"{source}: {key_names[name]} and {key} are the same parameter")
        arrays[name], key_names[name] = value, key
    del tensors
    describe = lambda name: key_names.get(name) or _name_to_hf(*name)  # noqa: E731
    return build_model(config, arrays, source, describe, dtype), tokenizer


def _previous_files(folder: pathlib.Path) -> list[pathlib.Path]:
    """The files of a Hugging Face checkpoint in `folder` that a new save retires: ours by
    name, and the shards its index files list. Only plain file names count as shards (as
    transformers writes them): a hostile index must not get files elsewhere deleted."""
    files = [folder / name for name in _HF_FILES + _WEIGHT_FILES]
    for name in _WEIGHT_FILES:
        index = folder / f"{name}.index.json"
        files.append(index)
        try:
            weight_map = read_json(index)["weight_map"]
            listed = set(weight_map.values())
        except (CheckpointError, TypeError, KeyError, AttributeError):
            continue  # unreadable: the index goes, and its shards are harmless without it
        suffix = pathlib.PurePath(name).suffix
        files += [
            folder / shard
            for shard in listed
            if isinstance(shard, str)
            and shard.endswith(suffix)
            and pathlib.PurePath(shard).name == shard
        ]
    return [f for f in files if os.path.islink(f) or os.path.isfile(f)]


def _is_plain_kmer(tokenizer: Tokenizer) -> TypeGuard[KmerTokenizer]:
    """A tokenizer that vocab.txt alone describes (what the published checkpoints have); any
    other is saved with `codonnt_tokenizer.json` beside it."""
    return type(tokenizer) is KmerTokenizer


def _hf_config(model: NucleotideTransformer, tokenizer: Tokenizer) -> dict:
    """config.json of `model`; a `CheckpointError` for what the layout cannot hold or a
    tokenizer that does not fit the model (its checkpoint would load wrong or not at all)."""
    c = model.config
    if c.embed_scale != 1.0:
        raise CheckpointError("the Hugging Face layout has no embed_scale; it must be 1.0")
    if c.ffn_activation != ("swish" if c.use_glu else "gelu"):
        raise CheckpointError("the Hugging Face layout has GLU with swish or an MLP with GELU only")
    if c.head_dim * c.num_heads != c.embed_dim:
        raise CheckpointError("the Hugging Face layout needs key_dim = embed_dim / num_heads")
    if _is_plain_kmer(tokenizer):
        rows = embedding_rows(tokenizer.k, tokenizer.layout)
        if (c.vocab_size, c.k_for_kmers) != (rows, tokenizer.k):
            raise CheckpointError(
                f"the tokenizer ({tokenizer.layout} layout, k={tokenizer.k}: {rows} embedding "
                f"rows) does not fit the model (vocab_size {c.vocab_size}, k_for_kmers "
                f"{c.k_for_kmers})"
            )
    elif c.vocab_size != tokenizer.vocab_size:
        raise CheckpointError(
            f"the tokenizer has {tokenizer.vocab_size} tokens, the model's embedding "
            f"{c.vocab_size} rows"
        )
    if (c.pad_token_id, c.mask_token_id) != (tokenizer.pad_id, tokenizer.mask_id):
        raise CheckpointError("the model's pad/mask ids differ from the tokenizer's")
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
    return config


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_STORAGE_DTYPES = {"float32": np.float32, "float16": np.float16, "bfloat16": ml_dtypes.bfloat16}


def save_hf(
    model: NucleotideTransformer,
    tokenizer: Tokenizer,
    path: pathlib.Path,
    dtype: str = "float32",
) -> None:
    config = _hf_config(model, tokenizer)  # before anything touches the disk
    record = None if _is_plain_kmer(tokenizer) else tokenizer_record(tokenizer)
    vocabulary = "\n".join(tokenizer.vocabulary) + "\n"
    if dtype not in _STORAGE_DTYPES:
        raise ValueError(f"storage dtype must be one of {sorted(_STORAGE_DTYPES)}, got {dtype!r}")
    storage = _STORAGE_DTYPES[dtype]
    c = model.config
    tensors = {}
    arrays = parameter_arrays(model)
    if storage is np.float16:
        big = [n for n, a in arrays.items() if np.abs(a).max(initial=0) > np.finfo(np.float16).max]
        if big:
            raise CheckpointError(f"{', '.join(big[:3])}: beyond float16's range; use bfloat16")
    for name, array in arrays.items():
        array = array.astype(storage)
        if name.startswith(".blocks."):
            for layer in range(c.num_layers):
                tensors[_name_to_hf(name, layer)] = np.ascontiguousarray(array[layer])
        else:
            tensors[_name_to_hf(name, None)] = np.ascontiguousarray(array)

    def write(folder: pathlib.Path) -> None:
        weights = folder / "model.safetensors"
        save_file(tensors, weights, metadata={"format": "pt"})
        # safetensors creates the file 0600 whatever the umask: give it the permissions of the
        # other files, or a checkpoint saved into a shared folder is unreadable to the group.
        weights.chmod(0o666 & ~_umask())
        (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        if isinstance(tokenizer, KmerTokenizer):
            tokenizer.save_vocab(folder / "vocab.txt")
        else:
            (folder / "vocab.txt").write_text(vocabulary, encoding="utf-8")
        if record is not None:
            (folder / TOKENIZER_FILE).write_text(json.dumps(record, indent=2) + "\n")

    replace_files(path, write, _previous_files)
