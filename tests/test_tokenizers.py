import functools
import itertools

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from codonnt_eqx import KmerTokenizer, SequenceError, SequenceTooLongError, Tokenizer
from reference_tokenizer import reference_encode, reference_tokens, reference_vocabulary


@functools.cache
def tokenizer(k: int, layout: str = "v2", **options) -> KmerTokenizer:
    return KmerTokenizer(k, layout=layout, **options)


@st.composite
def dna(draw, min_size: int = 1, max_size: int = 60) -> str:
    """ACGT with random N runs, including leading, trailing and adjacent ones."""
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
    return seq if len(seq) >= min_size else seq + "A" * (min_size - len(seq))


ks = st.integers(1, 8)


@given(k=ks, seq=dna())
@example(k=6, seq="ATTCCGATTCCGATTCCG")
@example(k=5, seq="ATCGAATNGGCGATGCAC")
def test_decode_inverts_encode(k, seq):
    tok = tokenizer(k)
    assert tok.decode(tok.encode(seq)) == seq


@given(k=ks, seq=dna(), layout=st.sampled_from(["v1", "v2"]))
def test_encode_matches_pure_python_reference(k, seq, layout):
    assert tokenizer(k, layout).encode(seq) == reference_encode(seq, k, layout)


@given(k=ks, seq=dna())
def test_spans_tile_the_input(k, seq):
    ids, spans = tokenizer(k).encode_with_spans(seq)
    assert spans[0] == (0, 0)  # <cls>
    body = spans[1:]
    assert body[0][0] == 0 and body[-1][1] == len(seq)
    for (_, end), (start, _) in itertools.pairwise(body):
        assert end == start
    tokens = reference_tokens(seq, k)[1:]
    assert [seq[s:e] for s, e in body] == tokens
    assert len(ids) == len(spans)


@given(k=ks, seq=dna())
def test_ids_are_inside_the_vocabulary(k, seq):
    tok = tokenizer(k)
    ids = np.array(tok.encode(seq))
    assert ids.min() >= 0 and ids.max() < tok.vocab_size
    assert tok.unk_id not in ids


@given(
    k=ks,
    seqs=st.lists(dna(), min_size=1, max_size=6),
    extra=st.integers(0, 5),
)
def test_batch_encode_equals_encode_plus_padding(k, seqs, extra):
    tok = tokenizer(k)
    singles = [tok.encode(s) for s in seqs]
    length = max(map(len, singles)) + extra
    batch = tok.batch_encode(seqs, length=length)
    assert batch.dtype == np.int32 and batch.shape == (len(seqs), length)
    for row, ids in zip(batch, singles, strict=True):
        assert row.tolist() == ids + [tok.pad_id] * (length - len(ids))
    assert tok.batch_encode(seqs).shape == (len(seqs), length - extra)


@given(k=ks, seqs=st.lists(dna(), min_size=1, max_size=4))
def test_batch_spans_equal_single_spans(k, seqs):
    tok = tokenizer(k)
    ids, spans = tok.batch_encode_with_spans(seqs)
    for i, seq in enumerate(seqs):
        single_ids, single_spans = tok.encode_with_spans(seq)
        n = len(single_ids)
        assert ids[i, :n].tolist() == single_ids
        assert [tuple(s) for s in spans[i, :n].tolist()] == single_spans
        assert (spans[i, n:] == 0).all()


def test_issue_examples():
    tok6, tok5 = tokenizer(6), tokenizer(5)
    ids = tok6.encode("ATTCCGATTCCGATTCCG")
    assert [tok6.vocabulary[i] for i in ids] == ["<cls>", "ATTCCG", "ATTCCG", "ATTCCG"]
    ids = tok5.encode("ATCGAATNGGCGATGCAC")
    assert [tok5.vocabulary[i] for i in ids] == ["<cls>", "ATCGA", "A", "T", "N", "GGCGA", "TGCAC"]


def test_v2_codon_layout_by_hand():
    tok = tokenizer(3)
    assert tok.vocab_size == 75
    assert tok.vocabulary[:11] == (
        "<unk>",
        "<pad>",
        "<mask>",
        "<cls>",
        "<eos>",
        "<bos>",
        "AAA",
        "AAT",
        "AAC",
        "AAG",
        "ATA",
    )
    assert tok.vocabulary[-6:] == ("GGG", "A", "T", "C", "G", "N")
    assert (tok.unk_id, tok.pad_id, tok.mask_id, tok.cls_id, tok.eos_id, tok.bos_id) == (
        0,
        1,
        2,
        3,
        4,
        5,
    )
    # ATG = A,T,G -> 0*16 + 1*4 + 3 = 7 -> id 6 + 7; then single A, then N.
    assert tok.encode("ATGAN") == [3, 13, 70, 74]


def test_v1_layout_by_hand():
    tok = tokenizer(6, "v1")
    assert tok.vocab_size == 4107
    assert tok.vocabulary[:5] == ("<unk>", "<pad>", "<mask>", "<cls>", "AAAAAA")
    assert tok.vocabulary[4100:] == ("A", "T", "C", "G", "N", "<eos>", "<bos>")
    assert (tok.pad_id, tok.mask_id, tok.cls_id, tok.eos_id, tok.bos_id) == (1, 2, 3, 4105, 4106)
    assert tokenizer(6).vocab_size == 4107
    assert tokenizer(6).vocabulary[6] == "AAAAAA"


@pytest.mark.parametrize("k,layout", [(1, "v2"), (3, "v2"), (6, "v2"), (6, "v1"), (4, "v1")])
def test_vocab_file_round_trip(tmp_path, k, layout):
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(reference_vocabulary(k, layout)) + "\n")
    loaded = KmerTokenizer.from_vocab_file(path)
    assert (loaded.k, loaded.layout) == (k, layout)
    assert loaded.vocabulary == reference_vocabulary(k, layout)
    out = tmp_path / "written.txt"
    loaded.save_vocab(out)
    assert out.read_text() == path.read_text()


def test_vocab_file_with_wrong_line_names_it(tmp_path):
    vocab = list(reference_vocabulary(3))
    vocab[10], vocab[11] = vocab[11], vocab[10]
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(vocab))
    with pytest.raises(ValueError, match="line 11"):
        KmerTokenizer.from_vocab_file(path)
    path.write_text("\n".join(reference_vocabulary(3)[:-1]))
    with pytest.raises(ValueError, match="74 tokens, expected 75"):
        KmerTokenizer.from_vocab_file(path)


invalid_chars = st.characters(exclude_characters="ACGTN", codec="utf-8")


@given(
    seqs=st.lists(dna(), min_size=1, max_size=4),
    data=st.data(),
    bad=invalid_chars,
    k=ks,
)
def test_invalid_character_raises_sequence_error_with_location(seqs, data, bad, k):
    index = data.draw(st.integers(0, len(seqs) - 1))
    position = data.draw(st.integers(0, len(seqs[index])))
    seqs = list(seqs)
    seqs[index] = seqs[index][:position] + bad + seqs[index][position:]
    with pytest.raises(SequenceError) as info:
        tokenizer(k).batch_encode(seqs)
    assert (info.value.index, info.value.position, info.value.char) == (index, position, bad)
    assert f"sequence {index}, position {position}" in str(info.value)


@pytest.mark.parametrize(
    "seq,hint",
    [
        (">chr1 some header", "FASTA header"),
        ("ACGT\nACGT", "whitespace"),
        ("ACGT ACGT", "whitespace"),
        ("ACgt", "uppercase=True"),
        ("ACRT", "iupac_to_n=True"),
        ("ACXT", "only A, C, G, T and N"),
    ],
)
def test_common_mistakes_get_a_hint(seq, hint):
    with pytest.raises(SequenceError, match=hint):
        tokenizer(3).encode(seq)


def test_empty_sequence_is_an_error():
    with pytest.raises(SequenceError, match="sequence 1 is empty"):
        tokenizer(3).batch_encode(["ACG", ""])


def test_a_single_string_is_not_a_batch():
    with pytest.raises(TypeError, match="one string"):
        tokenizer(3).batch_encode("ACGT")


def test_options_map_lowercase_and_ambiguity_codes():
    tok = tokenizer(3, uppercase=True, iupac_to_n=True)
    assert tok.encode("acgRYSWKMBDHVtt") == tokenizer(3).encode("ACGNNNNNNNNNNTT")
    with pytest.raises(SequenceError):
        tokenizer(3, iupac_to_n=True).encode("ACr")  # lowercase still rejected


def test_sequence_that_does_not_fit_is_named():
    with pytest.raises(SequenceTooLongError, match="sequence 1 has 4 tokens") as info:
        tokenizer(3).batch_encode(["ACG", "ACGACGACG"], length=3)
    assert info.value.index == 1


def test_without_cls():
    tok = KmerTokenizer(3, prepend_cls=False)
    assert tok.encode("AAAC") == [6, 72]  # AAA, then single C (A=70, T=71, C=72)


def test_decode_rejects_ids_outside_the_vocabulary():
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tokenizer(3).decode([3, 75])


@pytest.mark.parametrize(
    "k,error", [(0, ValueError), (13, ValueError), (2.0, TypeError), (True, TypeError)]
)
def test_bad_k(k, error):
    with pytest.raises(error):
        KmerTokenizer(k)


def test_kmer_tokenizer_is_a_tokenizer():
    assert isinstance(tokenizer(3), Tokenizer)
