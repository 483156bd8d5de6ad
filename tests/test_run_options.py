"""Run options live on the model: `with_options` sets them on every layer that reads them,
and every entry point accepts and refuses the same values through `RunOptions`."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from codonnt_eqx.kernels import IMPLEMENTATIONS

from codonnt_eqx import Embedder, RunOptions, Scorer, with_options
from codonnt_eqx.finetune import FinetuneConfig, add_lora
from codonnt_eqx.model import DTYPES, options_of
from codonnt_eqx.training import PretrainConfig
from helpers import TOKENIZERS, V2, perturbed_model, token_batch

BAD = [
    {"attention": "flash"},
    {"attention": "Pallas"},
    {"dtype": "int32"},
    {"dtype": jnp.int8},
    {"dtype": "bf16"},
    {"dtype": True},
    {"dtype": "float64"},  # float32 in disguise without JAX x64
]


@pytest.fixture(scope="module")
def model():
    return perturbed_model(V2)


def _entry_points(model):
    tok = TOKENIZERS[V2]
    return {
        "RunOptions": lambda **o: RunOptions(**o),
        "with_options": lambda **o: with_options(model, **o),
        "PretrainConfig": lambda **o: PretrainConfig(seq_length=8, tokens_per_batch=16, **o),
        "FinetuneConfig": lambda **o: FinetuneConfig(**o),
        "Embedder": lambda **o: Embedder(model, tok, **o),
        "Scorer": lambda **o: Scorer(model, tok, **o),
    }


@pytest.mark.parametrize("bad", BAD, ids=str)
def test_every_entry_point_refuses_the_same_bad_options(model, bad):
    messages = set()
    for make in _entry_points(model).values():
        with pytest.raises(ValueError) as error:
            make(**bad)
        messages.add(str(error.value))
    assert len(messages) == 1, messages  # one validator, one message


@pytest.mark.parametrize("attention", IMPLEMENTATIONS)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", jnp.bfloat16, "float16"])
def test_every_entry_point_accepts_the_same_good_options(model, attention, dtype):
    for name, make in _entry_points(model).items():
        made = make(attention=attention, dtype=dtype)
        options = made if isinstance(made, RunOptions) else getattr(made, "run_options", None)
        if options is None:
            options = options_of(getattr(made, "model", made))
        assert options.attention == attention, name
        assert options.dtype == jnp.dtype(dtype).name, name


def test_remat_is_accepted_by_every_entry_point_and_a_non_bool_is_not(model):
    for make in _entry_points(model).values():
        make(remat=True)
        with pytest.raises(TypeError):
            make(remat="yes")


def test_with_options_reaches_every_layer_and_keeps_the_original(model):
    fast = with_options(model, attention="xla", dtype="bfloat16", remat=True)
    b, head = fast.blocks, fast.lm_head
    holders = [b.attention, b.attention.query, b.attention.key, b.attention.value]
    holders += [b.attention.output, b.ffn.fc1, b.ffn.fc2, head.dense, head.decoder]
    want = RunOptions("xla", "bfloat16", True)
    assert fast.options == want and all(h.options == want for h in holders)
    assert model.options == RunOptions()  # a new model; the old one is untouched
    again = with_options(fast, dtype="float32")  # None keeps the rest
    assert again.options == RunOptions("xla", "float32", True)
    shapes = [x.shape for x in jax.tree.leaves(eqx.filter(fast, eqx.is_array))]
    assert shapes == [x.shape for x in jax.tree.leaves(eqx.filter(model, eqx.is_array))]


def test_the_compute_dtype_is_what_the_options_say(model):
    tokens = jnp.asarray(token_batch(V2)[0])
    f32 = with_options(model, attention="reference")
    bf16 = with_options(f32, dtype="bfloat16")
    out32, out16 = f32(tokens).logits, bf16(tokens).logits
    assert out16.dtype == jnp.float32  # outputs float32 whatever the compute dtype
    diff = np.abs(np.asarray(out32) - np.asarray(out16)).max()
    assert 1e-4 < diff < 0.5  # bfloat16 rounding, not a different model
    # The jaxpr of the bfloat16 model has bfloat16 matmuls; the float32 one has none.
    assert "bf16" in str(jax.make_jaxpr(bf16)(tokens)) and "bf16" not in str(
        jax.make_jaxpr(f32)(tokens)
    )


def test_attention_implementations_agree_and_remat_keeps_the_gradient(model):
    tokens = jnp.asarray(token_batch(V2)[0])
    outs = [with_options(model, attention=a)(tokens).logits for a in ("reference", "xla")]
    np.testing.assert_allclose(outs[0], outs[1], atol=5e-4)

    def loss(m):
        return jnp.sum(m(tokens).logits ** 2)

    plain = eqx.filter_grad(loss)(with_options(model, attention="reference"))
    remat = eqx.filter_grad(loss)(with_options(model, attention="reference", remat=True))
    for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(remat), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)  # float32 reassociation
    assert "remat" in str(jax.make_jaxpr(loss)(with_options(model, remat=True)))


def test_the_old_call_keywords_still_work_with_a_deprecation_warning(model):
    tokens = jnp.asarray(token_batch(V2)[0])
    with pytest.warns(DeprecationWarning, match="with_options"):
        old = model(tokens, attention="reference", dtype=jnp.bfloat16)
    new = with_options(model, attention="reference", dtype="bfloat16")(tokens)
    np.testing.assert_array_equal(old.logits, new.logits)
    with pytest.raises(ValueError, match="attention must be one of"):
        model(tokens, attention="flash")


def test_adapters_compute_in_the_dtype_of_the_layer_they_adapt(model):
    tokens = jnp.asarray(token_batch(V2)[0])
    adapted = add_lora(model, rank=2, key=jr.key(1))
    adapted = eqx.tree_at(
        lambda m: m.blocks.attention.query.b,
        adapted,
        jnp.ones_like(adapted.blocks.attention.query.b),
    )
    bf16 = with_options(adapted, dtype="bfloat16", attention="reference")
    assert bf16.blocks.attention.query.base.options.dtype == "bfloat16"
    assert "bf16" in str(jax.make_jaxpr(bf16)(tokens))
    f32 = with_options(adapted, attention="reference")
    assert np.abs(np.asarray(bf16(tokens).logits) - np.asarray(f32(tokens).logits)).max() < 1.0


def test_configs_hand_their_options_to_the_model_as_one_value():
    config = FinetuneConfig(attention="xla", dtype=jnp.bfloat16, remat=True)
    assert config.dtype == "bfloat16"  # stored by name
    assert config.run_options == RunOptions("xla", "bfloat16", True)
    assert dataclasses.asdict(PretrainConfig().run_options) == {
        "attention": "auto",
        "dtype": "bfloat16",
        "remat": False,
    }
    assert set(DTYPES) >= {"float32", "bfloat16"}
