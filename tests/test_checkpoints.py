import json
import pickle
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from codonnt_eqx import (
    CheckpointError,
    KmerTokenizer,
    UnsafePickleError,
    from_pretrained,
    save_pretrained,
)
from helpers import TOKENIZERS, V1, V2, perturbed_model, token_batch, write_jax_layout


def outputs(model, tokens):
    out = jax.vmap(lambda t: model(t, hidden_states=True))(jnp.asarray(tokens))
    return [out.logits, *out.hidden_states]


def assert_same_outputs(a, b, tokens, pad_id, rtol=0.0):
    valid = np.asarray(tokens) != pad_id
    for x, y in zip(outputs(a, tokens), outputs(b, tokens), strict=True):
        np.testing.assert_allclose(
            np.asarray(x)[valid],
            np.asarray(y)[valid],
            rtol=rtol,
            atol=rtol * float(np.abs(np.asarray(y)[valid]).max()),
        )


@pytest.mark.parametrize("config", [V2, V1], ids=["v2", "v1"])
def test_save_then_load_is_bit_exact(tmp_path, config):
    model, tok = perturbed_model(config), TOKENIZERS[config]
    save_pretrained(model, tok, tmp_path)
    loaded, loaded_tok = from_pretrained(tmp_path)
    assert loaded.config == model.config
    assert loaded_tok.vocabulary == tok.vocabulary
    for a, b in zip(jax.tree.leaves(model), jax.tree.leaves(loaded), strict=True):
        np.testing.assert_array_equal(a, b)
    tokens = token_batch(config)
    assert_same_outputs(loaded, model, tokens, config.pad_token_id)


@pytest.mark.parametrize("storage", ["float16", "bfloat16"])
def test_half_precision_storage_loads_as_float32_rounded(tmp_path, storage):
    import ml_dtypes

    model, tok = perturbed_model(V2), TOKENIZERS[V2]
    save_pretrained(model, tok, tmp_path, dtype=storage)
    stored = load_file(tmp_path / "model.safetensors")
    half = np.dtype(ml_dtypes.bfloat16 if storage == "bfloat16" else np.float16)
    assert {a.dtype for a in stored.values()} == {half}
    loaded, _ = from_pretrained(tmp_path)
    for a, b in zip(jax.tree.leaves(model), jax.tree.leaves(loaded), strict=True):
        assert b.dtype == jnp.float32
        np.testing.assert_array_equal(np.asarray(a).astype(half).astype(np.float32), b)


def test_half_precision_storage_refuses_weights_beyond_float16(tmp_path):
    model = perturbed_model(V2)
    model = jax.tree.map(lambda x: x * 1e6 if hasattr(x, "dtype") else x, model)
    with pytest.raises(CheckpointError, match="float16"):
        save_pretrained(model, TOKENIZERS[V2], tmp_path / "out", dtype="float16")
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="storage dtype"):
        save_pretrained(perturbed_model(V2), TOKENIZERS[V2], tmp_path / "out", dtype="int8")


def test_saved_files_follow_the_umask(tmp_path):
    save_pretrained(perturbed_model(V2), TOKENIZERS[V2], tmp_path / "ckpt")
    (tmp_path / "plain").write_text("")
    expected = (tmp_path / "plain").stat().st_mode & 0o777
    for name in ("model.safetensors", "config.json", "vocab.txt"):
        assert (tmp_path / "ckpt" / name).stat().st_mode & 0o777 == expected, name


# ---- InstaDeep's JAX layout, written in its own conventions -------------------------------------


@pytest.mark.parametrize("naming", ["published", "newer"])
@pytest.mark.parametrize("config", [V2, V1], ids=["v2", "v1"])
def test_jax_layout_loads_to_the_same_outputs(tmp_path, config, naming):
    pytest.importorskip("joblib")
    config = config.replace(layer_norm_eps=1e-5)
    model = perturbed_model(config, seed=2)
    write_jax_layout(model, tmp_path, naming)
    loaded, tok = from_pretrained(tmp_path)
    assert tok.vocabulary == TOKENIZERS[V2 if config.use_glu else V1].vocabulary
    assert loaded.config == model.config
    assert_same_outputs(loaded, model, token_batch(config), config.pad_token_id)


def test_hf_and_jax_layouts_of_one_model_agree(tmp_path):
    pytest.importorskip("joblib")
    model = perturbed_model(V1, seed=3)
    save_pretrained(model, TOKENIZERS[V1], tmp_path / "hf")
    write_jax_layout(model, tmp_path / "jax")
    hf, _ = from_pretrained(tmp_path / "hf")
    jx, _ = from_pretrained(tmp_path / "jax")
    assert_same_outputs(hf, jx, token_batch(V1), V1.pad_token_id)


def test_sharded_safetensors_and_bfloat16_loading(tmp_path):
    model = perturbed_model(V2)
    save_pretrained(model, TOKENIZERS[V2], tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    (tmp_path / "model.safetensors").unlink()
    keys = sorted(tensors)
    shards = {
        "model-00001-of-00002.safetensors": keys[::2],
        "model-00002-of-00002.safetensors": keys[1::2],
    }
    weight_map = {}
    for shard, names in shards.items():
        save_file({k: tensors[k] for k in names}, tmp_path / shard)
        weight_map |= dict.fromkeys(names, shard)
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    loaded, _ = from_pretrained(tmp_path)
    assert_same_outputs(loaded, model, token_batch(V2), V2.pad_token_id)
    half, _ = from_pretrained(tmp_path, dtype=jnp.bfloat16)
    assert {x.dtype for x in jax.tree.leaves(half) if hasattr(x, "dtype")} == {
        jnp.dtype("bfloat16")
    }


# ---- errors and safety ------------------------------------------------------------------------


def _saved(tmp_path, config=V2):
    save_pretrained(perturbed_model(config), TOKENIZERS[config], tmp_path)
    return load_file(tmp_path / "model.safetensors")


def _rewrite(tmp_path, tensors):
    save_file(tensors, tmp_path / "model.safetensors")


def test_missing_key_is_named(tmp_path):
    tensors = _saved(tmp_path)
    del tensors["esm.encoder.layer.1.attention.self.key.bias"]
    _rewrite(tmp_path, tensors)
    with pytest.raises(
        CheckpointError, match=r"model.safetensors: missing .*layer.1.attention.self.key.bias"
    ):
        from_pretrained(tmp_path)


def test_unexpected_key_is_named(tmp_path):
    tensors = _saved(tmp_path)
    tensors["esm.encoder.layer.0.attention.self.extra.weight"] = np.zeros(3, np.float32)
    _rewrite(tmp_path, tensors)
    with pytest.raises(
        CheckpointError, match="unexpected key esm.encoder.layer.0.attention.self.extra"
    ):
        from_pretrained(tmp_path)


def test_shape_mismatch_is_named(tmp_path):
    tensors = _saved(tmp_path)
    tensors["lm_head.dense.weight"] = tensors["lm_head.dense.weight"][:, :-1].copy()
    _rewrite(tmp_path, tensors)
    with pytest.raises(CheckpointError, match=r"lm_head.dense.weight has shape \(32, 31\)"):
        from_pretrained(tmp_path)


def test_wrong_dtype_is_named(tmp_path):
    tensors = _saved(tmp_path)
    tensors["lm_head.bias"] = tensors["lm_head.bias"].astype(np.int32)
    _rewrite(tmp_path, tensors)
    with pytest.raises(CheckpointError, match="lm_head.bias has dtype int32"):
        from_pretrained(tmp_path)


def test_truncated_weights_are_an_error(tmp_path):
    _saved(tmp_path)
    data = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="model.safetensors: corrupt"):
        from_pretrained(tmp_path)


def test_truncated_joblib_and_corrupt_torch_files_are_errors(tmp_path):
    pytest.importorskip("joblib")
    write_jax_layout(perturbed_model(V2), tmp_path / "jax")
    file = tmp_path / "jax" / "jax_model" / "pytree_ckpt.joblib"
    file.write_bytes(file.read_bytes()[:-1000])
    with pytest.raises(CheckpointError, match="pytree_ckpt.joblib: (truncated|corrupt)"):
        from_pretrained(tmp_path / "jax")
    save_pretrained(perturbed_model(V2), TOKENIZERS[V2], tmp_path / "hf")
    (tmp_path / "hf" / "model.safetensors").unlink()
    (tmp_path / "hf" / "pytorch_model.bin").write_bytes(b"not a zip file at all")
    with pytest.raises(CheckpointError, match="pytorch_model.bin: not a zip-format torch file"):
        from_pretrained(tmp_path / "hf")


def test_vocabulary_disagreeing_with_config_is_an_error(tmp_path):
    _saved(tmp_path)
    KmerTokenizer(4).save_vocab(tmp_path / "vocab.txt")
    with pytest.raises(
        CheckpointError, match="vocab.txt: 267 tokens, but config.json says vocab_size 75"
    ):
        from_pretrained(tmp_path)


def test_tied_decoder_weight_comes_from_the_embedding(tmp_path):
    tensors = _saved(tmp_path)
    del tensors["lm_head.decoder.weight"]
    _rewrite(tmp_path, tensors)
    config = json.loads((tmp_path / "config.json").read_text())
    with pytest.raises(CheckpointError, match="missing .*lm_head.decoder.weight"):
        from_pretrained(tmp_path)  # saved untied: the weight must be there
    (tmp_path / "config.json").write_text(json.dumps(config | {"tie_word_embeddings": True}))
    model, _ = from_pretrained(tmp_path)
    np.testing.assert_array_equal(model.lm_head.decoder.weight, model.embed)


def test_not_a_checkpoint_folder(tmp_path):
    with pytest.raises(CheckpointError, match="no config.json"):
        from_pretrained(tmp_path)


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_malicious_joblib_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "jax_model").mkdir()
    hyper = dict(k_for_kmers=3, embed_dim=32, num_layers=2, attention_heads=4, ffn_embed_dim=48)
    (tmp_path / "jax_model" / "hyperparams.json").write_text(json.dumps(hyper))
    with open(tmp_path / "jax_model" / "pytree_ckpt.joblib", "wb") as f:
        pickle.dump({"esm_transformer/~/embed": {"embeddings": _Exploit(marker)}}, f)
    with pytest.raises(UnsafePickleError, match=r"refusing to load (posix|os)\.system"):
        from_pretrained(tmp_path)
    assert not marker.exists()


def test_malicious_torch_file_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    save_pretrained(perturbed_model(V2), TOKENIZERS[V2], tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with zipfile.ZipFile(tmp_path / "pytorch_model.bin", "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"lm_head.bias": _Exploit(marker)}))
    with pytest.raises(UnsafePickleError, match="refusing to load"):
        from_pretrained(tmp_path)
    assert not marker.exists()


# ---- against transformers' own ESM (optional: torch + transformers) ----------------------------


@pytest.mark.parametrize("variant", ["v1-absolute", "rotary"])
@pytest.mark.parametrize("serialization", ["safetensors", "bin"])
def test_matches_transformers_esm(tmp_path, variant, serialization):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    tok = KmerTokenizer(2, layout="v1")
    rotary = variant == "rotary"
    hf_config = transformers.EsmConfig(
        vocab_size=tok.vocab_size - 2,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=42,
        hidden_act="gelu",
        position_embedding_type="rotary" if rotary else "absolute",
        emb_layer_norm_before=not rotary,
        token_dropout=not rotary,
        layer_norm_eps=1e-5,
        pad_token_id=1,
        mask_token_id=2,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    hf = transformers.EsmForMaskedLM(hf_config).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(0.2 * torch.randn_like(p))
    hf.save_pretrained(tmp_path, safe_serialization=serialization == "safetensors")
    tok.save_vocab(tmp_path / "vocab.txt")
    model, _ = from_pretrained(tmp_path)

    config = model.config
    tokens = token_batch(V1, seed=4)  # the same k=2 v1 tokenizer serves both variants
    with torch.no_grad():
        ref = hf(
            torch.as_tensor(tokens, dtype=torch.long),
            attention_mask=torch.as_tensor(tokens != 1, dtype=torch.long),
            output_hidden_states=True,
        )
    ours = jax.vmap(lambda t: model(t, hidden_states=True))(jnp.asarray(tokens))
    valid = tokens != config.pad_token_id
    pairs = [(ours.logits, ref.logits), *zip(ours.hidden_states, ref.hidden_states, strict=True)]
    for a, b in pairs:
        b = b.numpy()[valid]
        np.testing.assert_allclose(np.asarray(a)[valid], b, rtol=1e-4, atol=1e-4 * np.abs(b).max())


def test_any_tokenizer_saves_and_loads_with_its_model(tmp_path):
    """A tokenizer other than a plain KmerTokenizer goes into codonnt_tokenizer.json and comes
    back as itself, with the caller's options over its saved ones."""
    import jax.random as jr

    from codonnt_eqx import CodonTokenizer, ModelConfig, NucleotideTransformer

    tok = CodonTokenizer(1, partial="drop")
    config = ModelConfig(tok.vocab_size, 16, 1, 2, 32, max_positions=64)
    model = NucleotideTransformer(config, key=jr.key(0))
    save_pretrained(model, tok, tmp_path / "m")
    assert (tmp_path / "m" / "codonnt_tokenizer.json").exists()
    loaded, back = from_pretrained(tmp_path / "m", uppercase=True)
    assert type(back) is CodonTokenizer
    assert (back.frame, back.partial, back.uppercase) == (1, "drop", True)
    ids = jnp.asarray(back.batch_encode(["AatgNNcTAG"]))
    assert ids.tolist() == tok.batch_encode(["AATGNNCTAG"]).tolist()
    np.testing.assert_array_equal(loaded(ids[0]).logits, model(ids[0]).logits)
    # re-saving with a plain k-mer tokenizer retires the tokenizer file
    kmer = KmerTokenizer(2)
    small = NucleotideTransformer(
        ModelConfig(kmer.vocab_size, 16, 1, 2, 32, max_positions=64, k_for_kmers=2), key=jr.key(1)
    )
    save_pretrained(small, kmer, tmp_path / "m")
    assert not (tmp_path / "m" / "codonnt_tokenizer.json").exists()
    assert type(from_pretrained(tmp_path / "m")[1]) is KmerTokenizer
    # a tokenizer whose vocabulary does not fit the model is refused before writing
    with pytest.raises(CheckpointError, match="136 tokens"):
        save_pretrained(small, tok, tmp_path / "other")
    assert not (tmp_path / "other").exists()


def test_a_saved_codon_tokenizer_takes_its_own_options(tmp_path):
    """Options are checked by the saved tokenizer's class, not by KmerTokenizer's: `partial`
    is a CodonTokenizer option, and a misspelt one is still an error naming the file."""
    from codonnt_eqx import CodonTokenizer, from_pretrained, save_pretrained

    tok = CodonTokenizer()
    model = perturbed_model(V2.replace(vocab_size=tok.vocab_size))
    save_pretrained(model, tok, tmp_path / "m")
    _, loaded = from_pretrained(tmp_path / "m", partial="drop")
    assert isinstance(loaded, CodonTokenizer) and loaded.partial == "drop"
    assert loaded.encode("ACGTA") == CodonTokenizer(partial="drop").encode("ACGTA")
    with pytest.raises(Exception, match="partail"):
        from_pretrained(tmp_path / "m", partail="drop")
    with pytest.raises(TypeError):  # no saved tokenizer: KmerTokenizer's options
        save_pretrained(model.__class__(V2, key=jax.random.key(0)), TOKENIZERS[V2], tmp_path / "k")
        from_pretrained(tmp_path / "k", partial="drop")


@pytest.mark.parametrize(
    "config", [V1, V2.replace(use_glu=False, ffn_activation="gelu")], ids=["v1", "rotary"]
)
def test_saved_gelu_models_load_in_transformers_esm_with_the_same_outputs(tmp_path, config):
    # The other direction of the test above: what save_pretrained writes, transformers reads.
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    model = perturbed_model(config, seed=5)
    like = V1 if config == V1 else V2  # same vocabulary and tokenizer
    save_pretrained(model, TOKENIZERS[like], tmp_path)
    hf = transformers.EsmForMaskedLM.from_pretrained(tmp_path).eval()
    tokens = token_batch(like, seed=6)
    with torch.no_grad():
        ref = hf(
            torch.as_tensor(tokens, dtype=torch.long),
            attention_mask=torch.as_tensor(tokens != config.pad_token_id, dtype=torch.long),
            output_hidden_states=True,
        )
    valid = tokens != config.pad_token_id
    theirs = [ref.logits, *ref.hidden_states]
    for a, b in zip(outputs(model, tokens), theirs, strict=True):
        b = b.numpy()[valid]
        np.testing.assert_allclose(np.asarray(a)[valid], b, rtol=1e-4, atol=1e-4 * np.abs(b).max())
