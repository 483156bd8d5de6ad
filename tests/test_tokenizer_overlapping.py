"""The overlapping k-mer tokenizer: ids against a pure-Python reference, decoding (exact on
ACGT, lossy around N as documented), spans, batching, errors, and saving."""

import functools
import itertools

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import codonnt_eqx
from codonnt_eqx import (
    OverlappingKmerTokenizer,
    SequenceError,
    SequenceTooLongError,
    Tokenizer,
    load_tokenizer,
    save_tokenizer,
)
from codonnt_eqx.training import MaskedLM

SPECIALS = ("<unk>", "<pad>", "<mask>", "<cls>", "<eos>", "<bos>")


@functools.cache
def tokenizer(k: int, **options) -> OverlappingKmerTokenizer:
    return OverlappingKmerTokenizer(k, **options)


def reference_ids(seq: str, k: int) -> list[int]:
    """<cls>, then each window's id by hand: 6 + its rank among the ATCG k-mers (base 4 in the
    order A T C G), or the last id when it contains an N."""
    ids = [3]
    for i in range(len(seq) - k + 1):
        kmer = seq[i : i + k]
        if "N" in kmer:
            ids.append(6 + 4**k)
        else:
            rank = 0
            for base in kmer:
                rank = 4 * rank + "ATCG".index(base)
            ids.append(6 + rank)
    return ids


def reference_decoded(seq: str, k: int) -> str:
    """`seq` with N for every base that no N-free k-mer of `seq` covers."""
    covered = [False] * len(seq)
    for i in range(len(seq) - k + 1):
        if "N" not in seq[i : i + k]:
            covered[i : i + k] = [True] * k
    return "".join(b if c else "N" for b, c in zip(seq, covered, strict=True))


ks = st.integers(1, 8)


@st.composite
def acgt(draw, k: int, max_size: int = 60) -> str:
    return draw(st.text("ACGT", min_size=k, max_size=max(k, max_size)))


@st.composite
def dna(draw, k: int, max_size: int = 60) -> str:
    """ACGT with N runs (leading, trailing, adjacent), at least k bases."""
    pieces = draw(
        st.lists(
            st.one_of(
                st.text("ACGT", min_size=1, max_size=17), st.text("N", min_size=1, max_size=4)
            ),
            min_size=1,
            max_size=8,
        )
    )
    seq = "".join(pieces)[:max_size]
    return seq + "A" * max(0, k - len(seq))


@given(data=st.data(), k=ks)
@example(data=None, k=1)
def test_decode_inverts_encode_on_acgt(data, k):
    seq = "ACGT" if data is None else data.draw(acgt(k))
    tok = tokenizer(k)
    assert tok.decode(tok.encode(seq)) == seq


@given(data=st.data(), k=ks)
def test_decode_loses_exactly_the_bases_without_an_n_free_kmer(data, k):
    seq = data.draw(dna(k))
    tok = tokenizer(k)
    ids = tok.encode(seq)
    decoded = tok.decode(ids)
    assert decoded == reference_decoded(seq, k)
    # What decode gives encodes back to the same ids.
    assert tok.encode(decoded) == ids


@pytest.mark.parametrize(
    "k, seq, decoded",
    [
        (3, "ACNGT", "NNNNN"),
        (3, "ACGTNACGT", "ACGTNACGT"),  # stretches between Ns of >= k bases survive
        (3, "ACGTNACNGT", "ACGTNNNNNN"),  # AC and GT are shorter than k
        (1, "NAN", "NAN"),
        (2, "ANNA", "NNNN"),
    ],
)
def test_n_neighbourhoods_by_hand(k, seq, decoded):
    tok = tokenizer(k)
    assert tok.decode(tok.encode(seq)) == decoded == reference_decoded(seq, k)


@given(data=st.data(), k=ks)
@example(data=None, k=6)
def test_encode_matches_pure_python_reference(data, k):
    seq = "NATTCCGATTCCGATTCCGN" if data is None else data.draw(dna(k))
    assert tokenizer(k).encode(seq) == reference_ids(seq, k)


def test_vocabulary_layout():
    tok = tokenizer(2)
    assert tok.vocabulary[:6] == SPECIALS
    assert tok.vocabulary[6:] == (
        *("".join(p) for p in itertools.product("ATCG", repeat=2)),
        "NN",
    )
    assert tok.vocab_size == 6 + 16 + 1 and tok.n_id == 22
    assert (tok.unk_id, tok.pad_id, tok.mask_id, tok.cls_id) == (0, 1, 2, 3)
    assert tok.special_ids == frozenset(range(6))
    assert tok.token_to_id("GA") == 6 + 3 * 4 + 0
    # The same k-mer ids as the non-overlapping tokenizer.
    kmer = codonnt_eqx.KmerTokenizer(5)
    assert all(
        tokenizer(5).token_to_id(t) == kmer.token_to_id(t) for t in tokenizer(5).vocabulary[6:-1]
    )
    with pytest.raises(ValueError, match="not in the vocabulary"):
        tok.token_to_id("AN")


@given(data=st.data(), k=ks)
def test_spans_are_the_windows(data, k):
    seq = data.draw(dna(k))
    ids, spans = tokenizer(k).encode_with_spans(seq)
    assert len(ids) == len(spans) == len(seq) - k + 2
    assert spans[0] == (0, 0)
    assert spans[1:] == [(i, i + k) for i in range(len(seq) - k + 1)]


@given(data=st.data(), k=ks, extra=st.integers(0, 4), cls=st.booleans())
def test_batch_equals_single_plus_padding(data, k, extra, cls):
    tok = tokenizer(k, prepend_cls=cls)
    seqs = data.draw(st.lists(dna(k), min_size=1, max_size=5))
    singles = [tok.encode_with_spans(s) for s in seqs]
    length = max(len(ids) for ids, _ in singles) + extra
    ids, spans = tok.batch_encode_with_spans(seqs, length=length)
    assert ids.dtype == spans.dtype == np.int32
    assert ids.shape == (len(seqs), length) and spans.shape == (len(seqs), length, 2)
    np.testing.assert_array_equal(tok.batch_encode(seqs, length=length), ids)
    for row, (single_ids, single_spans) in enumerate(singles):
        n = len(single_ids)
        assert ids[row, :n].tolist() == single_ids
        assert [tuple(s) for s in spans[row, :n].tolist()] == single_spans
        assert np.all(ids[row, n:] == tok.pad_id) and np.all(spans[row, n:] == 0)
    if not cls:
        assert singles[0][0] == reference_ids(seqs[0], k)[1:]
    assert tok.batch_encode(seqs).shape[1] == length - extra


def test_without_cls():
    tok = tokenizer(3, prepend_cls=False)
    assert tok.encode("ACGT") == reference_ids("ACGT", 3)[1:]
    assert tok.nucleotides_for_tokens(10) == 12
    assert tok.decode(tok.encode("ACGT")) == "ACGT"


@given(k=ks, tokens=st.integers(2, 100))
def test_nucleotides_for_tokens_makes_that_many_tokens(k, tokens):
    tok = tokenizer(k)
    bases = tok.nucleotides_for_tokens(tokens)
    assert bases == tokens - 1 + k - 1
    assert len(tok.encode("A" * bases)) == tokens


def test_token_nucleotides_and_mask_span():
    tok = tokenizer(4)
    nucleotides = tok.token_nucleotides
    assert nucleotides.tolist() == [0] * 6 + [1] * (4**4 + 1)
    nucleotides[:] = 7  # a copy: the tokenizer's own table is untouched
    assert tok.token_nucleotides[6] == 1
    assert tok.mask_span == 4
    assert MaskedLM.for_tokenizer(tok).span == 4
    with pytest.raises(ValueError, match="no room"):
        tok.nucleotides_for_tokens(1)


@pytest.mark.parametrize(
    "ids, message",
    [
        ([3, 6 + 0, 6 + 63], "positions 1 and 2 disagree on base 1"),  # AAA, GGG
        ([6 + 1, 1, 6 + 1], "positions 0 and 2 disagree on base 2"),  # AAT, <pad>, AAT
        ([6 + 0, 6 + 4**3, 6 + 0], "N-token at position 1"),  # AAA, NNN, AAA
        ([3, 6 + 4**3, 99], "outside the vocabulary"),
    ],
)
def test_decode_rejects_ids_that_are_not_overlapping_kmers(ids, message):
    with pytest.raises(ValueError, match=message):
        tokenizer(3).decode(ids)


def test_decode_drops_specials_and_accepts_arrays():
    tok = tokenizer(3)
    ids = np.array(tok.batch_encode(["ACGTA"], length=8)[0])
    assert tok.decode(ids) == "ACGTA"
    assert tok.decode([]) == tok.decode([tok.cls_id, tok.pad_id]) == ""
    assert tok.decode([tok.n_id]) == "NNN"


invalid_chars = st.characters(exclude_characters="ACGTN", codec="utf-8")


@given(data=st.data(), k=ks, bad=invalid_chars)
def test_invalid_character_raises_sequence_error_with_location(data, k, bad):
    seqs = data.draw(st.lists(dna(k), min_size=1, max_size=4))
    index = data.draw(st.integers(0, len(seqs) - 1))
    position = data.draw(st.integers(0, len(seqs[index])))
    seqs[index] = seqs[index][:position] + bad + seqs[index][position:]
    with pytest.raises(SequenceError) as info:
        tokenizer(k).batch_encode(seqs)
    assert (info.value.index, info.value.position, info.value.char) == (index, position, bad)
    assert f"sequence {index}, position {position}" in str(info.value)


def test_sequence_shorter_than_k_is_named():
    with pytest.raises(SequenceError, match="sequence 1 has 2 bases, fewer than k = 3") as info:
        tokenizer(3).batch_encode(["ACGT", "AC"])
    assert (info.value.index, info.value.position, info.value.char) == (1, None, None)
    with pytest.raises(SequenceError, match="empty"):
        tokenizer(3).encode("")


def test_sequence_that_does_not_fit_is_named():
    with pytest.raises(SequenceTooLongError, match="sequence 1 has 5 tokens") as info:
        tokenizer(3).batch_encode(["ACG", "ACGTAC"], length=4)
    assert (info.value.index, info.value.num_tokens, info.value.length) == (1, 5, 4)


def test_options_map_lowercase_and_ambiguity_codes():
    tok = tokenizer(2, uppercase=True, iupac_to_n=True)
    assert tok.encode("acRt") == tokenizer(2).encode("ACNT")
    with pytest.raises(SequenceError, match="uppercase=True"):
        tokenizer(2).encode("acgt")


@pytest.mark.parametrize("k, error", [(0, ValueError), (9, ValueError), (2.0, TypeError)])
def test_bad_k(k, error):
    with pytest.raises(error):
        OverlappingKmerTokenizer(k)


def test_is_a_tokenizer_and_saves(tmp_path):
    tok = OverlappingKmerTokenizer(5, prepend_cls=False, uppercase=True, iupac_to_n=True)
    assert isinstance(tok, Tokenizer)
    assert repr(tok) == (
        "OverlappingKmerTokenizer(k=5, prepend_cls=False, uppercase=True, iupac_to_n=True)"
    )
    assert OverlappingKmerTokenizer.from_config(tok.to_config()).to_config() == tok.to_config()
    save_tokenizer(tok, tmp_path / "tok.json")
    loaded = load_tokenizer(tmp_path / "tok.json")
    assert type(loaded) is OverlappingKmerTokenizer and repr(loaded) == repr(tok)
    assert loaded.vocabulary == tok.vocabulary
    assert loaded.encode("acgtrAC") == tok.encode("ACGTNAC")
