"""BERT masking: structural properties over varied sequences, and its statistics (the 80/10/10
split, uniform replacements, uniform selection) by chi-square tests with a fixed seed."""

import functools
import inspect
import itertools
import math

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
import scipy.stats  # a dependency of jax itself
from hypothesis import example, given

from codonnt_eqx import KmerTokenizer
from codonnt_eqx.training._masking import MaskedTokens, mask_tokens, maskable_tokens

TOK = KmerTokenizer(3)
MASKABLE = maskable_tokens(TOK)
MASKABLE_IDS = np.flatnonzero(MASKABLE)
SPECIAL_IN_BODY = [TOK.unk_id, TOK.eos_id, TOK.bos_id, TOK.mask_id]
MASK = functools.partial(mask_tokens, maskable=MASKABLE, mask_id=TOK.mask_id)
# Each statistical test passes when its p-value is above this: for a correct implementation a
# given seed fails with probability below 1e-7 (chi-square approximation, expected counts
# >= 30 per cell), and the seeds are fixed, so the tests are deterministic.
P_MIN = 1e-7
# (rate, mask_prob, random_prob): the recipe and the corners (rate 0; one position at least;
# everything selected; always <mask>; always a random token; always kept). Each configuration
# compiles once (about a second on CPU, mostly the threefry PRNG), so there are few, and every
# test works on sequences of LENGTH tokens or batches [ROWS, LENGTH] to share compilations.
RECIPE = (0.15, 0.8, 0.1)
CONFIGS = [RECIPE, (0.01, 0.0, 1.0), (1.0, 1.0, 0.0), (0.0, 0.0, 0.0)]
LENGTH, ROWS = 80, 10_000


@functools.cache
def masker(rate, mask_prob, random_prob):
    return jax.jit(functools.partial(MASK, rate=rate, mask_prob=mask_prob, random_prob=random_prob))


@functools.cache
def batched_masker(rate, mask_prob, random_prob):
    mask = functools.partial(MASK, rate=rate, mask_prob=mask_prob, random_prob=random_prob)
    return jax.jit(jax.vmap(mask))


def expected_count(rate, num_maskable):
    if rate == 0 or num_maskable == 0:
        return 0
    return max(1, round(rate * num_maskable))


@st.composite
def sequence(draw):
    """[<cls>?] body of maskable tokens (Ns frequent) with specials sprinkled in, <pad>s."""
    body = draw(
        st.lists(
            st.one_of(
                st.sampled_from(MASKABLE_IDS.tolist()),
                st.just(TOK.token_to_id("N")),
                st.sampled_from(SPECIAL_IN_BODY),
            ),
            max_size=LENGTH - 1,
        )
    )
    cls = [TOK.cls_id] if draw(st.booleans()) else []
    tokens = cls + body
    return np.array(tokens + [TOK.pad_id] * (LENGTH - len(tokens)), dtype=np.int32)


def test_maskable_tokens_are_the_non_special_ones():
    assert MASKABLE.dtype == np.bool_ and MASKABLE.shape == (TOK.vocab_size,)
    for i, token in enumerate(TOK.vocabulary):
        assert MASKABLE[i] == (not token.startswith("<")), token
    assert MASKABLE.sum() == 64 + 5


ALL_PADS = np.full(LENGTH, TOK.pad_id, np.int32)
ONE_TOKEN = np.concatenate([[TOK.cls_id, 20], ALL_PADS[2:]]).astype(np.int32)
# 30 maskable tokens: round(0.15 * 30) = round(4.5) = 4 (half to even, as Python's round).
HALF = np.concatenate([[TOK.cls_id], np.full(30, 20), ALL_PADS[31:]]).astype(np.int32)


@given(tokens=sequence(), config=st.sampled_from(CONFIGS), seed=st.integers(0, 2**31 - 1))
@example(tokens=ALL_PADS, config=RECIPE, seed=0)
@example(tokens=ONE_TOKEN, config=RECIPE, seed=0)
@example(tokens=HALF, config=RECIPE, seed=0)
@example(tokens=ONE_TOKEN, config=CONFIGS[1], seed=0)
def test_masking_structure(tokens, config, seed):
    rate, mask_prob, random_prob = config
    out = masker(*config)(jr.key(seed), tokens)
    inputs, targets, selected = (np.asarray(x) for x in (out.inputs, out.targets, out.selected))
    assert isinstance(out, MaskedTokens)
    assert inputs.dtype == targets.dtype == np.int32 and selected.dtype == np.bool_
    assert inputs.shape == targets.shape == selected.shape == tokens.shape
    np.testing.assert_array_equal(targets, tokens)

    maskable_pos = MASKABLE[tokens]
    # <pad>, <cls> and the other specials are never selected; the count is exact.
    assert not np.any(selected & ~maskable_pos)
    assert selected.sum() == expected_count(rate, int(maskable_pos.sum()))
    # Unselected positions are untouched.
    np.testing.assert_array_equal(inputs[~selected], tokens[~selected])
    # A changed selected position is <mask> or a maskable token other than the original.
    replaced = selected & (inputs != tokens) & (inputs != TOK.mask_id)
    assert np.all(MASKABLE[inputs[replaced]])
    if mask_prob == 1.0:
        assert np.all(inputs[selected] == TOK.mask_id)
    if random_prob == 1.0:  # every selected position draws a random token: never the original
        np.testing.assert_array_equal(replaced, selected)
    if random_prob == 0.0:
        assert not np.any(replaced)
    if mask_prob == 0.0 and random_prob == 0.0:
        np.testing.assert_array_equal(inputs, tokens)


def test_two_maskable_tokens_replace_each_other():
    maskable = np.zeros(TOK.vocab_size, bool)
    a, b = TOK.token_to_id("AAA"), TOK.token_to_id("N")
    maskable[[a, b]] = True
    tokens = np.array([TOK.cls_id] + [a, b] * 10 + [TOK.pad_id] * 3, np.int32)
    out = jax.jit(
        functools.partial(
            mask_tokens, maskable=maskable, mask_id=TOK.mask_id, rate=1.0, mask_prob=0.0,
            random_prob=1.0,
        )
    )(jr.key(1), tokens)  # fmt: skip
    expected = np.where(tokens == a, b, np.where(tokens == b, a, tokens))
    np.testing.assert_array_equal(out.inputs, expected)


def test_ids_outside_the_vocabulary_are_never_selected():
    tokens = np.full(LENGTH, TOK.vocab_size, np.int32)  # 75: one past the last id
    tokens[::4], tokens[1::4], tokens[2::4] = 20, -1, 1000
    out = masker(*CONFIGS[2])(jr.key(0), tokens)  # rate 1: every maskable position
    np.testing.assert_array_equal(out.selected, tokens == 20)
    np.testing.assert_array_equal(out.inputs, np.where(tokens == 20, TOK.mask_id, tokens))


def _statistical_batch(seed):
    """[ROWS, LENGTH]: <cls>, 66 random maskable tokens with 4 specials at fixed places, then
    <pad>s; 10 positions are selected in each row."""
    rng = np.random.default_rng(seed)
    tokens = np.full((ROWS, LENGTH), TOK.pad_id, np.int32)
    tokens[:, 0] = TOK.cls_id
    tokens[:, 1:71] = rng.choice(MASKABLE_IDS, (ROWS, 70))
    tokens[:, [5, 17, 40, 66]] = [TOK.unk_id, TOK.mask_id, TOK.eos_id, TOK.bos_id]
    keys = jr.split(jr.key(seed), ROWS)
    return tokens, keys, jax.tree.map(np.asarray, batched_masker(*RECIPE)(keys, tokens))


@pytest.fixture(scope="module")
def statistical_batch():
    return _statistical_batch(seed=12345)


def test_masking_is_a_function_of_the_key_and_vmap_equals_a_loop(statistical_batch):
    tokens, keys, out = statistical_batch
    again = batched_masker(*RECIPE)(keys, tokens)
    for field in ("inputs", "targets", "selected"):
        np.testing.assert_array_equal(getattr(again, field), getattr(out, field))
    single = masker(*RECIPE)
    for row in range(5):
        one = single(keys[row], tokens[row])
        for field in ("inputs", "targets", "selected"):
            np.testing.assert_array_equal(getattr(out, field)[row], getattr(one, field))
    other = single(jr.key(4), tokens[0])
    # 10 of 66 positions: two keys choose the same ones with probability 1/C(66, 10) ~ 5e-12.
    assert not np.array_equal(other.selected, out.selected[0])


def test_selected_tokens_split_80_10_10(statistical_batch):
    tokens, _, out = statistical_batch
    sel = out.selected
    assert sel.sum() == ROWS * round(0.15 * 66)
    masked = np.sum(sel & (out.inputs == TOK.mask_id))
    random = np.sum(sel & (out.inputs != TOK.mask_id) & (out.inputs != tokens))
    kept = np.sum(sel & (out.inputs == tokens))
    observed = np.array([masked, random, kept])
    expected = sel.sum() * np.array([0.8, 0.1, 0.1])
    assert scipy.stats.chisquare(observed, expected).pvalue > P_MIN, observed


def test_random_replacements_are_uniform_over_the_other_maskable_tokens(statistical_batch):
    tokens, _, out = statistical_batch
    replaced = out.selected & (out.inputs != TOK.mask_id) & (out.inputs != tokens)
    index = np.full(TOK.vocab_size, -1)
    index[MASKABLE_IDS] = np.arange(len(MASKABLE_IDS))
    # Whatever the original, the replacement's offset from it in the list of maskable tokens
    # is uniform on 1..m-1: one multinomial over all replacements.
    m = len(MASKABLE_IDS)
    offsets = (index[out.inputs[replaced]] - index[tokens[replaced]]) % m
    counts = np.bincount(offsets, minlength=m)
    assert counts[0] == 0  # never the original
    assert scipy.stats.chisquare(counts[1:]).pvalue > P_MIN, counts
    # The originals are uniform over the maskable tokens, so the replacements are too: this
    # catches a token that is never drawn, which the offsets (pooled over originals) can miss.
    drawn = np.bincount(index[out.inputs[replaced]], minlength=m)
    assert scipy.stats.chisquare(drawn).pvalue > P_MIN, drawn
    # ~10^4 draws: a given token is missed with probability (1 - 1/69)^(10^4) < 1e-60.
    assert drawn.min() > 0, drawn


def test_selected_positions_are_uniform(statistical_batch):
    tokens, _, out = statistical_batch
    maskable_pos = MASKABLE[tokens[0]]
    assert not np.any(out.selected[:, ~maskable_pos])
    counts = out.selected[:, maskable_pos].sum(axis=0)
    n, c, rows = int(maskable_pos.sum()), 10, tokens.shape[0]
    p = c / n
    # Drawing c of n without replacement makes the per-position counts negatively correlated:
    # the Pearson statistic is (1 - p) n / (n - 1) times a chi-square with n - 1 dof.
    stat = np.sum((counts - rows * p) ** 2 / (rows * p)) / ((1 - p) * n / (n - 1))
    assert scipy.stats.chi2.sf(stat, n - 1) > P_MIN, counts


def test_every_subset_is_equally_likely():
    # 10 maskable positions among specials and pads: round(0.15 * 10) = 2 are selected, and
    # the 45 pairs are equally likely (a stronger claim than uniform marginals).
    a, n = TOK.token_to_id("ACG"), TOK.token_to_id("N")
    body = [a, n, TOK.unk_id, a, a, TOK.eos_id, a, n, a, a, n, a]
    tokens = np.full((ROWS, LENGTH), TOK.pad_id, np.int32)
    tokens[:, : len(body) + 1] = [TOK.cls_id, *body]
    selected = np.asarray(batched_masker(*RECIPE)(jr.split(jr.key(7), ROWS), tokens).selected)
    assert selected.sum(axis=1).tolist() == [2] * ROWS
    positions = np.flatnonzero(MASKABLE[tokens[0]])
    assert len(positions) == 10
    pair_index = {pair: i for i, pair in enumerate(itertools.combinations(positions, 2))}
    counts = np.bincount([pair_index[tuple(np.flatnonzero(row))] for row in selected], minlength=45)
    assert scipy.stats.chisquare(counts).pvalue > P_MIN, counts


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(rate=-0.1), "rate"),
        (dict(rate=1.5), "rate"),
        (dict(rate=math.nan), "rate"),
        (dict(mask_prob=1.1), "mask_prob"),
        (dict(random_prob=-0.5), "random_prob"),
        (dict(mask_prob=0.8, random_prob=0.3), "at most 1"),
        (dict(mask_id=-1), "outside the vocabulary"),
        (dict(mask_id=75), "outside the vocabulary"),
        (dict(mask_id=10), "must be a special token"),
        (dict(maskable=np.eye(75, dtype=bool)[10]), "at least two maskable"),
    ],
)
def test_invalid_arguments_raise(kwargs, message):
    arguments = dict(
        tokens=np.array([TOK.cls_id, 10, 11], np.int32), maskable=MASKABLE, mask_id=TOK.mask_id
    )
    arguments |= kwargs
    with pytest.raises(ValueError, match=message):
        mask_tokens(jr.key(0), **arguments)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(maskable=np.ones((2, 75), bool)),
        dict(maskable=MASKABLE.astype(np.int32)),
        dict(tokens=np.zeros((2, 4), np.int32)),
    ],
)
def test_wrong_shapes_and_dtypes_raise(kwargs):
    # The type-checked test run catches these in the annotations (TypeError); without the
    # checker mask_tokens raises ValueError itself.
    arguments = dict(
        tokens=np.array([TOK.cls_id, 10, 11], np.int32), maskable=MASKABLE, mask_id=TOK.mask_id
    )
    with pytest.raises((ValueError, TypeError)):
        mask_tokens(jr.key(0), **(arguments | kwargs))
    with pytest.raises(ValueError):
        inspect.unwrap(mask_tokens)(jr.key(0), **(arguments | kwargs))


def test_traced_maskable_raises():
    tokens = np.array([TOK.cls_id, 10, 11], np.int32)
    with pytest.raises(ValueError, match="concrete"):
        jax.jit(lambda m: mask_tokens(jr.key(0), tokens, maskable=m, mask_id=TOK.mask_id))(
            jnp.asarray(MASKABLE)
        )


# -- span masking (overlapping k-mers) ---------------------------------------------------------


@functools.cache
def span_masker(span, rate=0.15, batched=False):
    mask = functools.partial(MASK, rate=rate, span=span)
    return jax.jit(jax.vmap(mask) if batched else mask)


def test_span_one_is_the_default_masking(statistical_batch):
    tokens, keys, out = statistical_batch
    again = jax.vmap(functools.partial(MASK, rate=0.15, span=1))(keys[:50], tokens[:50])
    for field in ("inputs", "targets", "selected"):
        np.testing.assert_array_equal(getattr(again, field), getattr(out, field)[:50])


def runs(selected):
    """(start, end) of the maximal runs of True."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], selected.astype(int), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


@given(tokens=sequence(), span=st.sampled_from([3, 6]), seed=st.integers(0, 2**31 - 1))
@example(tokens=ONE_TOKEN, span=6, seed=0)
@example(tokens=ALL_PADS, span=3, seed=0)
def test_span_masking_selects_runs_of_span_maskable_positions(tokens, span, seed):
    out = span_masker(span)(jr.key(seed), tokens)
    selected, inputs = np.asarray(out.selected), np.asarray(out.inputs)
    maskable_pos = MASKABLE[tokens]
    num_maskable = int(maskable_pos.sum())
    assert not np.any(selected & ~maskable_pos)
    np.testing.assert_array_equal(out.targets, tokens)
    np.testing.assert_array_equal(inputs[~selected], tokens[~selected])
    # Anchors are at least one, at most all; each selects itself and at most span positions.
    anchors = 0 if num_maskable == 0 else max(1, round(0.15 * num_maskable / span))
    assert anchors <= selected.sum() <= anchors * span
    for start, end in runs(selected):
        after_special = start > 0 and not maskable_pos[start - 1]
        if not after_special:
            # The run starts at an anchor: the maskable positions of its span are all selected.
            window = slice(start, start + span)
            np.testing.assert_array_equal(selected[window], maskable_pos[window])
        if end - start < span:  # a short run is cut by a non-maskable position or the end
            assert after_special or end == len(tokens) or not maskable_pos[end]


def test_span_masking_steps_over_a_special():
    tokens = np.array([TOK.cls_id, 20, TOK.unk_id, 21, 22, 23, 24], np.int32)
    # rate 1 over 5 maskable positions, span 4: round(5 / 4) = 1 anchor.
    mask = jax.jit(functools.partial(MASK, rate=1.0, span=4))
    seen = set()
    for seed in range(40):
        seen.add(tuple(np.flatnonzero(mask(jr.key(seed), tokens).selected).tolist()))
    # Anchor at 1 covers 1..4 (2 is <unk>); at 3 covers 3..6; at 4, 5, 6 to the end.
    assert seen == {(1, 3, 4), (3, 4, 5, 6), (4, 5, 6), (5, 6), (6,)}


def expected_span_selected(n, anchors, span):
    """E[selected] for `anchors` drawn without replacement among n contiguous maskable
    positions: position p is missed when none of the min(p + 1, span) anchors able to cover it
    is drawn."""
    total = math.comb(n, anchors)
    return sum(1 - math.comb(n - min(p + 1, span), anchors) / total for p in range(n))


@pytest.mark.parametrize("span", [3, 6])
def test_span_masking_selects_about_rate(span):
    rows, length = 2000, 1024
    rng = np.random.default_rng(span)
    tokens = np.full((rows, length), TOK.pad_id, np.int32)
    tokens[:, 0] = TOK.cls_id
    tokens[:, 1:-23] = rng.choice(MASKABLE_IDS, (rows, length - 24))
    n = length - 24
    keys = jr.split(jr.key(span), rows)
    out = span_masker(span, batched=True)(keys, tokens)
    counts = np.asarray(out.selected).sum(axis=1)
    anchors = round(0.15 * n / span)
    expected = expected_span_selected(n, anchors, span)
    # The mean of 2000 rows: 6 standard errors is a loose bound that a correct implementation
    # misses with probability ~1e-9, and a wrong coverage rule (spans left of the anchor still
    # give the same mean; spans of span - 1 or span + 1 do not) is far outside it.
    assert abs(counts.mean() - expected) < 6 * counts.std() / math.sqrt(rows)
    assert 0.85 * 0.15 < counts.mean() / n <= 0.15
    # The usual 80/10/10 split applies to every selected position.
    sel = np.asarray(out.selected)
    inputs = np.asarray(out.inputs)
    masked = np.sum(sel & (inputs == TOK.mask_id))
    kept = np.sum(sel & (inputs == tokens))
    observed = np.array([masked, sel.sum() - masked - kept, kept])
    assert scipy.stats.chisquare(observed, sel.sum() * np.array([0.8, 0.1, 0.1])).pvalue > P_MIN


def test_span_masking_under_jit_vmap_equals_a_loop():
    tokens = np.stack([HALF, ONE_TOKEN, ALL_PADS, HALF])
    keys = jr.split(jr.key(3), 4)
    out = span_masker(6, batched=True)(keys, tokens)
    for row in range(4):
        one = span_masker(6)(keys[row], tokens[row])
        for field in ("inputs", "targets", "selected"):
            np.testing.assert_array_equal(getattr(out, field)[row], getattr(one, field))


@pytest.mark.parametrize("span", [0, -2, 1.5, True, "3"])
def test_invalid_span_raises(span):
    tokens = np.array([TOK.cls_id, 10, 11], np.int32)
    with pytest.raises(ValueError, match="span must be an int >= 1"):
        inspect.unwrap(mask_tokens)(
            jr.key(0), tokens, maskable=MASKABLE, mask_id=TOK.mask_id, span=span
        )
