"""The embedding library: pooling and layers against direct model calls, window stitching,
reverse-complement averaging, invalid records, few compiled shapes."""

import hypothesis.strategies as st
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import example, given

from codonnt_eqx import Embedder, FastaRecord, InvalidRecordError, embed, reverse_complement
from codonnt_eqx.inference._windows import plan_windows
from helpers import TOKENIZERS, V1, V2, perturbed_model

ATOL = 2e-5


@pytest.fixture(scope="module")
def v2():
    return perturbed_model(V2), TOKENIZERS[V2]


def _random_sequences(lengths, seed=0, alphabet="ACGT"):
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(list(alphabet), size=n)) for n in lengths]


def _direct(model, tok, seq, layer=None):
    """Per-token outputs of one unpadded, unwindowed model call: [tokens, embed] with <cls>."""
    ids = jnp.asarray(tok.encode(seq))
    if layer is None:
        return np.asarray(model(ids).embeddings)
    return np.asarray(model(ids, hidden_states=True).hidden_states[layer])


# ---- pooling and layers -----------------------------------------------------------------------


@pytest.mark.parametrize("pooling", ["mean", "max", "cls"])
def test_pooling_matches_a_direct_model_call(v2, pooling):
    model, tok = v2
    seqs = _random_sequences((7, 31, 45, 4)) + ["ACGNNTTGA"]
    got = embed(model, tok, seqs, pooling=pooling, bucket=16)
    assert got.shape == (len(seqs), V2.embed_dim) and got.dtype == np.float32
    for seq, row in zip(seqs, got, strict=True):
        out = _direct(model, tok, seq)
        want = {"mean": out[1:].mean(0), "max": out[1:].max(0), "cls": out[0]}[pooling]
        np.testing.assert_allclose(row, want, atol=ATOL, rtol=1e-5)


def test_per_token_output_has_each_tokens_span(v2):
    model, tok = v2
    seqs = _random_sequences((10, 23))
    results = list(Embedder(model, tok, pooling="none")(seqs))
    for seq, r in zip(seqs, results, strict=True):
        ids, spans = tok.encode_with_spans(seq)
        assert r.num_tokens == len(ids) - 1 and r.length == len(seq)
        np.testing.assert_array_equal(r.spans, np.array(spans[1:]))
        np.testing.assert_allclose(r.vectors, _direct(model, tok, seq)[1:], atol=ATOL, rtol=1e-5)
        assert "".join(seq[a:b] for a, b in r.spans) == seq


def test_chosen_layers_are_the_models_hidden_states(v2):
    model, tok = v2
    seqs = _random_sequences((14, 5))
    got = embed(model, tok, seqs, layers=[0, 1, -1])
    assert got.shape == (2, 3, V2.embed_dim)
    for seq, row in zip(seqs, got, strict=True):
        for j, layer in enumerate([0, 1, 2]):
            want = _direct(model, tok, seq, layer)[1:].mean(0)
            np.testing.assert_allclose(row[j], want, atol=ATOL, rtol=1e-5)
    # the last hidden state is the default output
    np.testing.assert_allclose(got[:, 2], embed(model, tok, seqs), atol=1e-6)


@pytest.mark.parametrize("layers", [[], [3], [-4]])
def test_layers_outside_the_model_are_refused(v2, layers):
    with pytest.raises(ValueError, match="layer"):
        Embedder(*v2, layers=layers)


def test_bfloat16_is_close_to_float32(v2):
    seqs = _random_sequences((30, 12))
    full = embed(*v2, seqs)
    half = embed(*v2, seqs, dtype="bfloat16")
    assert half.dtype == np.float32
    np.testing.assert_allclose(half, full, atol=0.1)
    assert not np.array_equal(half, full)


# ---- windows ------------------------------------------------------------------------------------


@given(
    num_tokens=st.integers(1, 400),
    size=st.integers(1, 60),
    overlap_fraction=st.floats(0, 0.99),
)
@example(num_tokens=10, size=4, overlap_fraction=0.0)
def test_windows_cover_every_token_exactly_once_from_the_most_central_window(
    num_tokens, size, overlap_fraction
):
    overlap = int(overlap_fraction * size)
    plan = plan_windows(num_tokens, size, overlap)
    covered = np.concatenate([np.arange(lo, hi) for lo, hi in plan.keep])
    np.testing.assert_array_equal(covered, np.arange(num_tokens))  # once each, in order
    ends = np.minimum(plan.start + size, num_tokens)
    assert plan.start[0] == 0 and ends[-1] == num_tokens
    assert np.all(np.diff(plan.start) > 0) and np.all(np.diff(plan.start) <= size - overlap)
    for w, (lo, hi) in enumerate(plan.keep):
        for p in range(lo, hi):
            assert plan.start[w] <= p < ends[w]
            # no other window holding p has more context on p's nearer side
            margins = [
                min(p - plan.start[v], ends[v] - 1 - p)
                for v in range(len(plan.start))
                if plan.start[v] <= p < ends[v]
            ]
            assert min(p - plan.start[w], ends[w] - 1 - p) == max(margins)


def test_a_sequence_shorter_than_the_window_is_one_direct_call(v2):
    model, tok = v2
    (seq,) = _random_sequences((80,))
    direct = _direct(model, tok, seq)[1:]
    n = len(tok.encode(seq))  # 29: <cls>, 26 codons, 2 single bases
    for window in (n, n + 1, 200):
        (r,) = Embedder(model, tok, pooling="none", window=window, overlap=5)([seq])
        np.testing.assert_allclose(r.vectors, direct, atol=ATOL, rtol=1e-5)


@pytest.mark.parametrize("config", [V2, V1], ids=["rotary", "learned"])
def test_long_sequences_are_stitched_from_direct_window_calls(config):
    model, tok = perturbed_model(config), TOKENIZERS[config]
    window, overlap = (16, 5) if config is V2 else (None, 9)  # V1: its 40 positions
    size = (window or config.max_positions) - 1
    seqs = _random_sequences((200, 31, 95), seed=3, alphabet="ACGTN")
    results = list(Embedder(model, tok, pooling="none", window=window, overlap=overlap)(seqs))
    for seq, r in zip(seqs, results, strict=True):
        ids = np.asarray(tok.encode(seq))
        body = ids[1:]
        # The plan's windows, each run as a direct call; every token taken from the window
        # whose centre is nearest (the earlier one on ties), found by brute force.
        starts = plan_windows(len(body), size, overlap).start.tolist()
        direct = {
            s: np.asarray(model(jnp.asarray(np.r_[ids[:1], body[s : s + size]])).embeddings)
            for s in starts
        }
        want = []
        for p in range(len(body)):
            centre = [abs(p - (s + (min(size, len(body) - s) - 1) / 2)) for s in starts]
            s = starts[int(np.argmin(centre))]
            want.append(direct[s][1 + p - s])
        assert r.vectors.shape == (len(body), config.embed_dim)
        np.testing.assert_allclose(r.vectors, np.stack(want), atol=ATOL, rtol=1e-5)
        (pooled,) = Embedder(model, tok, window=window, overlap=overlap)([seq])
        np.testing.assert_allclose(pooled.vectors, np.stack(want).mean(0), atol=ATOL)


# ---- strands, errors, batching ------------------------------------------------------------------


def test_rc_average_is_the_mean_of_both_strands(v2):
    model, tok = v2
    seqs = _random_sequences((20, 33), seed=5)
    assert reverse_complement("AACGTN") == "NACGTT"
    got = embed(model, tok, seqs, rc_average=True)
    for seq, row in zip(seqs, got, strict=True):
        fwd = _direct(model, tok, seq)[1:].mean(0)
        rev = _direct(model, tok, reverse_complement(seq))[1:].mean(0)
        np.testing.assert_allclose(row, (fwd + rev) / 2, atol=ATOL, rtol=1e-5)
    with pytest.raises(ValueError, match="rc_average"):
        Embedder(model, tok, pooling="none", rc_average=True)


def test_invalid_records_are_named_and_can_be_skipped(v2):
    model, tok = v2
    records = [
        FastaRecord("good", "", "ACGTACGTA"),
        FastaRecord("bad_one", "", "ACGTXAC"),
        FastaRecord("also_good", "", "TTTGGG"),
    ]
    with pytest.raises(InvalidRecordError, match="'bad_one', position 5") as info:
        list(Embedder(model, tok)(records))
    assert info.value.name == "bad_one" and info.value.position == 4
    skipped = []
    results = list(Embedder(model, tok)(records, on_invalid=skipped.append))
    assert [r.name for r in results] == ["good", "also_good"]
    assert [s.name for s in skipped] == ["bad_one"]


def test_many_lengths_compile_few_shapes_and_keep_input_order(v2):
    model, tok = v2
    lengths = list(range(3, 300, 7))
    seqs = _random_sequences(lengths, seed=9)
    embedder = Embedder(model, tok, bucket=32, batch_tokens=256, window=128, chunk_tokens=500)
    results = list(embedder(seqs))
    assert [r.length for r in results] == lengths
    assert len(embedder.runner.shapes) <= 4 * 4  # 4 lengths x few partial-batch sizes
    np.testing.assert_allclose(
        np.stack([r.vectors for r in results[:3]]),
        np.stack([_direct(model, tok, s)[1:].mean(0) for s in seqs[:3]]),
        atol=ATOL,
        rtol=1e-5,
    )


@pytest.mark.parametrize("prepend_cls", [True, False])
def test_a_tokenizer_that_refuses_partial_codons_embeds_like_one_that_keeps_them(prepend_cls):
    """Construction must not probe the tokenizer with a sequence it may refuse ("A" is a
    partial codon to `partial="error"`); on whole codons both tokenizers give the same ids."""
    from codonnt_eqx import CodonTokenizer

    strict = CodonTokenizer(partial="error", prepend_cls=prepend_cls)
    lenient = CodonTokenizer(partial="keep", prepend_cls=prepend_cls)
    model = perturbed_model(V2.replace(vocab_size=strict.vocab_size))
    seqs = _random_sequences((30, 99, 3))
    for pooling in ("mean", "cls") if prepend_cls else ("mean",):
        got = embed(model, strict, seqs, pooling=pooling, window=12)
        want = embed(model, lenient, seqs, pooling=pooling, window=12)
        np.testing.assert_allclose(got, want, atol=ATOL, rtol=1e-5)
    got = list(Embedder(model, strict, pooling="none", window=12)(seqs))
    assert [r.num_tokens for r in got] == [n // 3 for n in (30, 99, 3)]
    direct = _direct(model, strict, seqs[0])
    np.testing.assert_allclose(got[0].vectors, direct[int(prepend_cls) :], atol=ATOL, rtol=1e-5)
