import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from codonnt_eqx import (
    CodonTokenizer,
    KmerTokenizer,
    SequenceError,
    SequenceTooLongError,
    Tokenizer,
    load_tokenizer,
    save_tokenizer,
)

ACGTN = st.text("ACGTN", min_size=1, max_size=40)
ACGT = st.text("ACGT", min_size=1, max_size=40)
frames = st.sampled_from([0, 1, 2])

# The vocabulary as the docstring specifies it, written out independently.
SPECIALS = ["<unk>", "<pad>", "<mask>", "<cls>", "<eos>", "<bos>"]
CODONS = ["".join(c) for c in itertools.product("ATCG", repeat=3)]
WITH_N = ["".join(c) for c in itertools.product("ATCGN", repeat=3) if "N" in c]
VOCAB = SPECIALS + CODONS + list("ATCGN") + WITH_N


def reference(seq: str, frame: int, partial: str) -> list[int]:
    """Pure Python: <cls>, leading bases, codons from `frame`, trailing bases."""
    lead = seq[:frame]
    body_end = frame + (len(seq) - frame) // 3 * 3 if len(seq) > frame else len(seq)
    codons = [seq[i : i + 3] for i in range(frame, body_end, 3)]
    tail = seq[body_end:] if len(seq) > frame else ""
    tokens = ["<cls>"]
    if partial == "keep":
        tokens += list(lead) + codons + list(tail)
    else:
        tokens += codons
    return [VOCAB.index(t) for t in tokens]


def test_vocabulary_is_the_documented_one():
    assert CodonTokenizer().vocabulary == tuple(VOCAB)
    assert len(VOCAB) == 136
    # ids 0..74 are Codon-NT's 3-mer tokenizer's
    assert CodonTokenizer().vocabulary[:75] == KmerTokenizer(3).vocabulary


@given(seq=ACGTN, frame=frames, partial=st.sampled_from(["keep", "drop"]))
def test_encode_matches_pure_python_reference(seq, frame, partial):
    assert CodonTokenizer(frame, partial=partial).encode(seq) == reference(seq, frame, partial)


@given(seq=ACGTN, frame=frames)
def test_decode_inverts_encode(seq, frame):
    tok = CodonTokenizer(frame)
    assert tok.decode(tok.encode(seq)) == seq


@given(seq=ACGTN, frame=frames)
def test_drop_keeps_the_whole_codons_only(seq, frame):
    tok = CodonTokenizer(frame, partial="drop")
    whole = max(len(seq) - frame, 0) // 3 * 3
    assert tok.decode(tok.encode(seq)) == seq[frame : frame + whole]


@given(seq=ACGTN, frame=frames, partial=st.sampled_from(["keep", "drop"]))
def test_spans_point_at_the_token_bases(seq, frame, partial):
    tok = CodonTokenizer(frame, partial=partial)
    ids, spans = tok.encode_with_spans(seq)
    assert spans[0] == (0, 0)
    for i, (start, end) in zip(ids[1:], spans[1:], strict=True):
        assert seq[start:end] == tok.vocabulary[i]
        if end - start == 3:
            assert (start - frame) % 3 == 0  # every codon in frame
    covered = [p for s, e in spans[1:] for p in range(s, e)]
    assert covered == sorted(set(covered))  # in order, no overlap


@given(seq=ACGT.filter(lambda s: len(s) >= 3), position=st.integers(0, 39))
def test_an_n_changes_one_codon_and_never_the_frame(seq, position):
    position %= len(seq)
    with_n = seq[:position] + "N" + seq[position + 1 :]
    tok = CodonTokenizer()
    before, after = tok.encode(seq), tok.encode(with_n)
    assert len(before) == len(after)
    differ = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b]
    assert len(differ) == 1
    # NT's tokenizer instead restarts its grid after the N: tokens after it move
    kmer = KmerTokenizer(3).encode_with_spans(with_n)[1]
    codon = tok.encode_with_spans(with_n)[1]
    assert all(s % 3 == 0 for s, e in codon if e - s == 3)
    if position % 3 != 2 and position + 3 < len(seq) - len(seq) % 3:
        assert any(s % 3 != 0 for s, e in kmer if e - s == 3)


@given(seq=ACGT)
def test_frame_0_equals_codon_nt_tokenizer_without_n(seq):
    assert CodonTokenizer().encode(seq) == KmerTokenizer(3).encode(seq)


def test_partial_error_names_the_position():
    tok = CodonTokenizer(partial="error")
    assert tok.decode(tok.encode("ATGTAA")) == "ATGTAA"
    with pytest.raises(SequenceError, match="not a whole codon") as e:
        tok.batch_encode(["ATGTAA", "ATGTA"])
    assert (e.value.index, e.value.position) == (1, 3)
    with pytest.raises(SequenceError) as e:
        CodonTokenizer(1, partial="error").encode("AATGTAA")
    assert e.value.position == 0


def test_invalid_input_is_refused_with_its_position():
    with pytest.raises(SequenceError) as e:
        CodonTokenizer().batch_encode(["ATG", "ATGxCC"])
    assert (e.value.index, e.value.position, e.value.char) == (1, 3, "x")
    assert CodonTokenizer(uppercase=True).encode("atgn") == CodonTokenizer().encode("ATGN")
    assert CodonTokenizer(iupac_to_n=True).encode("ATR") == CodonTokenizer().encode("ATN")
    for bad in (3, -1, True):
        with pytest.raises(ValueError, match="frame"):
            CodonTokenizer(bad)
    # under the test run's beartype the annotation refuses it first (a TypeError)
    with pytest.raises((ValueError, TypeError), match="partial"):
        CodonTokenizer(partial="pad")


@given(seqs=st.lists(ACGTN, min_size=1, max_size=5), frame=frames, extra=st.integers(0, 3))
def test_batch_encode_equals_encode_plus_padding(seqs, frame, extra):
    tok = CodonTokenizer(frame)
    singles = [tok.encode(s) for s in seqs]
    length = max(map(len, singles)) + extra
    ids, spans = tok.batch_encode_with_spans(seqs, length)
    assert ids.dtype == np.int32 and ids.shape == (len(seqs), length)
    for row, single, row_spans, seq in zip(ids, singles, spans, seqs, strict=True):
        assert row.tolist() == single + [tok.pad_id] * (length - len(single))
        assert row_spans[len(single) :].tolist() == [[0, 0]] * (length - len(single))
        assert row_spans[: len(single)].tolist() == [list(s) for s in tok.encode_with_spans(seq)[1]]
    if length > 1:
        with pytest.raises(SequenceTooLongError):
            tok.batch_encode(seqs, length=max(map(len, singles)) - 1)


def test_protocol_members_and_save_load(tmp_path):
    tok = CodonTokenizer(2, partial="drop", uppercase=True)
    assert isinstance(tok, Tokenizer)
    assert tok.mask_span == 1
    sizes = tok.token_nucleotides
    assert sizes[:6].tolist() == [0] * 6 and set(sizes[6:70]) == {3} and set(sizes[75:]) == {3}
    assert sizes[70:75].tolist() == [1] * 5
    assert tok.nucleotides_for_tokens(11) == 30
    save_tokenizer(tok, tmp_path / "t.json")
    back = load_tokenizer(tmp_path / "t.json")
    assert type(back) is CodonTokenizer and repr(back) == repr(tok)
    assert back.encode("cAATGNNCCT") == tok.encode("cAATGNNCCT")
