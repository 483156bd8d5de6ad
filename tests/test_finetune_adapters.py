"""IA³ and LoRA as tree surgery: exact identity at initialisation, the right parameters train,
adapters reload, and the base weights never change."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from codonnt_eqx.finetune import (
    AdapterError,
    Finetuned,
    Head,
    ProvenanceError,
    SequenceHead,
    add_ia3,
    add_lora,
    load_finetuned,
    save_finetuned,
    trainable_filter,
)
from codonnt_eqx.finetune._step import make_step, sequence_forward
from helpers import TOKENIZERS, V2, perturbed_model, token_batch


def outputs(model, tokens):
    return jax.vmap(lambda t: model(t, hidden_states=True))(jnp.asarray(tokens))


def arrays(tree):
    return [np.asarray(x) for x in jax.tree.leaves(eqx.filter(tree, eqx.is_array))]


def assert_bit_identical(a, b):
    left, right = arrays(a), arrays(b)
    assert len(left) == len(right)
    for x, y in zip(left, right, strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape
        assert x.tobytes() == y.tobytes()


@pytest.mark.parametrize(
    "adapt",
    [
        add_ia3,
        lambda m: add_lora(
            m,
            rank=3,
            targets=tuple(["query", "key", "value", "output", "fc1", "fc2"]),
            key=jr.key(5),
        ),
    ],
    ids=["ia3-unit-scales", "lora-zero-b"],
)
def test_fresh_adapters_leave_outputs_exactly_unchanged(adapt):
    model = perturbed_model(V2)
    tokens = token_batch(V2, mask_rate=0.0)  # three lengths: padding present
    base, adapted = outputs(model, tokens), outputs(adapt(model), tokens)
    np.testing.assert_array_equal(np.asarray(adapted.logits), np.asarray(base.logits))
    for x, y in zip(adapted.hidden_states, base.hidden_states, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_lora_equals_the_merged_weight_update():
    model = perturbed_model(V2)
    adapted = add_lora(model, rank=2, alpha=4.0, targets=("value", "fc1"), key=jr.key(1))
    value, fc1 = adapted.blocks.attention.value, adapted.blocks.ffn.fc1
    b_value = jr.normal(jr.key(2), value.b.shape)
    b_fc1 = jr.normal(jr.key(3), fc1.b.shape)
    adapted = eqx.tree_at(
        lambda m: (m.blocks.attention.value.b, m.blocks.ffn.fc1.b), adapted, (b_value, b_fc1)
    )

    # Reference: W + (alpha / r) B A merged into plain weights, in float64 NumPy.
    def merge(w, b, a):
        update = np.einsum("lor,lri->loi", np.asarray(b, np.float64), np.asarray(a, np.float64))
        return np.asarray(w, np.float64) + 2.0 * update

    merged = eqx.tree_at(
        lambda m: (m.blocks.attention.value.weight, m.blocks.ffn.fc1.weight),
        model,
        (
            jnp.asarray(merge(value.base.weight, b_value, value.a), jnp.float32),
            jnp.asarray(merge(fc1.base.weight, b_fc1, fc1.a), jnp.float32),
        ),
    )
    tokens = token_batch(V2, mask_rate=0.0)
    got, want = outputs(adapted, tokens).logits, outputs(merged, tokens).logits
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-4)
    assert not np.allclose(np.asarray(got), np.asarray(outputs(model, tokens).logits), atol=1e-3)


def test_ia3_scales_keys_values_and_ffn_hidden():
    model = perturbed_model(V2)
    adapted = add_ia3(model)
    layers, d, ffn = V2.num_layers, V2.embed_dim, V2.ffn_dim
    assert adapted.blocks.attention.key.scale.shape == (layers, d)
    assert adapted.blocks.attention.value.scale.shape == (layers, d)
    assert adapted.blocks.ffn.fc2.scale.shape == (layers, ffn)
    # Scaling the values by s scales the attention output before its projection by s: with
    # zero output bias, doubling every value vector doubles the block's attention branch.
    spec = trainable_filter(adapted, "ia3")
    trainable = eqx.filter(adapted, spec)
    sizes = sorted(x.size for x in jax.tree.leaves(trainable))
    assert sizes == sorted([layers * d, layers * d, layers * ffn])
    with pytest.raises(ValueError, match="already has adapters"):
        add_ia3(adapted)


@pytest.mark.parametrize("mode", ["ia3", "lora"])
def test_training_changes_adapters_only_and_the_saved_adapter_reloads(tmp_path, mode):
    model = perturbed_model(V2)
    tok = TOKENIZERS[V2]
    before = jax.tree.map(lambda x: np.array(x, copy=True), eqx.filter(model, eqx.is_array))
    adapted = add_ia3(model) if mode == "ia3" else add_lora(model, rank=2, key=jr.key(1))
    head = SequenceHead(Head(V2.embed_dim, 1, 8, key=jr.key(2)))
    finetuned = Finetuned(adapted, head, -1, tuple(sorted(tok.special_ids)))
    spec = trainable_filter(finetuned, mode)
    spec = eqx.tree_at(lambda f: f.head, spec, jax.tree.map(eqx.is_inexact_array, head))
    trainable, frozen = eqx.partition(finetuned, spec)
    trainable = jax.tree.map(jnp.copy, trainable)
    import optax

    optimizer = optax.adam(1e-2)
    step = make_step(sequence_forward("reference", jnp.float32), "regression", optimizer)
    opt_state = optimizer.init(trainable)
    tokens = jnp.asarray(token_batch(V2, mask_rate=0.0))
    targets, weights = jnp.asarray([1.0, -1.0, 0.5]), jnp.ones(3)
    for _ in range(3):
        trainable, opt_state, _ = step(frozen, trainable, opt_state, tokens, targets, weights)
    trained = eqx.combine(trainable, frozen)
    assert_bit_identical(model, before)  # the caller's model
    base_after = trained.model
    for where in ("attention.query", "attention.key", "attention.value", "ffn.fc2"):
        layer = base_after.blocks
        for part in where.split("."):
            layer = getattr(layer, part)
        base = getattr(layer, "base", layer)
        original = model.blocks
        for part in where.split("."):
            original = getattr(original, part)
        assert_bit_identical(base, original)
    info = {
        "mode": mode,
        "layer": -1,
        "head": {"kind": "sequence", "in_features": V2.embed_dim, "out_features": 1, "hidden": 8},
        "lora": {"rank": 2, "alpha": 16.0, "targets": ["query", "value"]},
    }
    path = save_finetuned(tmp_path, trained, tok, info)
    model_bytes = sum(x.nbytes for x in arrays(model))
    assert path.stat().st_size < model_bytes / 2  # adapters and head only
    reloaded, _ = load_finetuned(tmp_path, model, tok)
    assert_bit_identical(reloaded, trained)
    assert_bit_identical(model, before)
    run = lambda f: jax.vmap(lambda t: f(t, attention="reference"))(tokens)  # noqa: E731
    np.testing.assert_array_equal(np.asarray(run(reloaded)), np.asarray(run(trained)))


def test_reload_refuses_a_mismatched_structure(tmp_path):
    model = perturbed_model(V2)
    tok = TOKENIZERS[V2]
    head = SequenceHead(Head(V2.embed_dim, 2, None, key=jr.key(0)))
    finetuned = Finetuned(add_ia3(model), head, -1, tuple(sorted(tok.special_ids)))
    info = {
        "mode": "ia3",
        "layer": -1,
        "head": {
            "kind": "sequence",
            "in_features": V2.embed_dim,
            "out_features": 2,
            "hidden": None,
        },
    }
    save_finetuned(tmp_path, finetuned, tok, info)
    other = perturbed_model(V2.replace(num_layers=3))
    digests = "base weights [0-9a-f]{16}.*base weights [0-9a-f]{16}"
    with pytest.raises(ProvenanceError, match=digests):
        load_finetuned(tmp_path, other, tok)
    with pytest.raises(
        AdapterError, match=r"saved as F32\[2, \d+\], the metadata and model need F32\[3"
    ):
        load_finetuned(tmp_path, other, tok, check_base=False)
