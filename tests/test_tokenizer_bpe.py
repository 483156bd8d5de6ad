import functools
import itertools
import json
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from codonnt_eqx import BPETokenizer, SequenceError, SequenceTooLongError, Tokenizer
from codonnt_eqx.tokenizers import load_tokenizer, save_tokenizer

SPECIALS = ("<unk>", "<pad>", "<mask>", "<cls>", "<eos>", "<bos>")
MOTIFS = ("ATGGCC", "TATAAA", "GGGCGC", "CAGCAGCAG", "TTAGGG")


def biased_dna(rng: np.random.Generator, length: int) -> str:
    """Random bases interleaved with motifs (so there is something to merge) and a few N
    runs."""
    pieces, size = [], 0
    while size < length:
        roll = rng.random()
        if roll < 0.45:
            piece = MOTIFS[rng.integers(len(MOTIFS))]
        elif roll < 0.99:
            piece = "".join(rng.choice(list("ACGT"), rng.integers(1, 6)))
        else:
            piece = "N" * int(rng.integers(1, 4))
        pieces.append(piece)
        size += len(piece)
    return "".join(pieces)[:length]


@functools.cache
def corpus(seed: int = 0, count: int = 60, length: int = 2000) -> tuple[str, ...]:
    rng = np.random.default_rng(seed)
    return tuple(biased_dna(rng, int(rng.integers(length // 2, length))) for _ in range(count))


@functools.cache
def tokenizer(vocab_size: int = 200, **options) -> BPETokenizer:
    return BPETokenizer.train(corpus(), vocab_size, **options)


@st.composite
def dna(draw, min_size: int = 1, max_size: int = 80) -> str:
    """ACGT, motifs the tokenizer has learned and N runs, including leading, trailing and
    adjacent ones."""
    pieces = draw(
        st.lists(
            st.one_of(
                st.text("ACGT", min_size=1, max_size=17),
                st.sampled_from(MOTIFS),
                st.text("N", min_size=1, max_size=4),
            ),
            min_size=1,
            max_size=8,
        )
    )
    seq = "".join(pieces)[:max_size]
    return seq if len(seq) >= min_size else seq + "A" * (min_size - len(seq))


@given(seq=dna())
@example(seq="N")
@example(seq="NNATGGCCN")
def test_decode_inverts_encode(seq):
    tok = tokenizer()
    assert tok.decode(tok.encode(seq)) == seq


@given(seq=dna())
def test_spans_tile_the_input_and_spell_their_tokens(seq):
    tok = tokenizer()
    ids, spans = tok.encode_with_spans(seq)
    assert ids[0] == tok.cls_id and spans[0] == (0, 0)
    body, body_ids = spans[1:], ids[1:]
    assert body[0][0] == 0 and body[-1][1] == len(seq)
    for (_, end), (start, _) in itertools.pairwise(body):
        assert end == start
    assert [seq[s:e] for s, e in body] == [tok.vocabulary[i] for i in body_ids]
    assert tok.unk_id not in ids


@given(seq=dna())
def test_n_is_always_a_token_of_its_own(seq):
    tok = tokenizer()
    ids, spans = tok.encode_with_spans(seq)
    n_spans = [span for i, span in zip(ids, spans, strict=True) if tok.vocabulary[i] == "N"]
    assert n_spans == [(p, p + 1) for p, char in enumerate(seq) if char == "N"]


def test_no_learned_token_contains_n():
    # A corpus where N sits inside the most frequent pattern: merging across it would pay.
    tok = BPETokenizer.train(["ACNGT" * 200, "NACNGTN" * 100], 64)
    assert [t for t in tok.vocabulary if "N" in t] == ["N"]
    assert tok.vocab_size > 11


@given(seqs=st.lists(dna(), min_size=1, max_size=6), extra=st.integers(0, 5))
def test_batch_encode_equals_encode_plus_padding(seqs, extra):
    tok = tokenizer()
    singles = [tok.encode(s) for s in seqs]
    length = max(map(len, singles)) + extra
    batch = tok.batch_encode(seqs, length=length)
    assert batch.dtype == np.int32 and batch.shape == (len(seqs), length)
    for row, ids in zip(batch, singles, strict=True):
        assert row.tolist() == ids + [tok.pad_id] * (length - len(ids))
    assert tok.batch_encode(seqs).shape == (len(seqs), length - extra)


@given(seqs=st.lists(dna(), min_size=1, max_size=4))
def test_batch_spans_equal_single_spans(seqs):
    tok = tokenizer()
    ids, spans = tok.batch_encode_with_spans(seqs)
    assert spans.dtype == np.int32 and spans.shape == (*ids.shape, 2)
    for i, seq in enumerate(seqs):
        single_ids, single_spans = tok.encode_with_spans(seq)
        n = len(single_ids)
        assert ids[i, :n].tolist() == single_ids
        assert [tuple(s) for s in spans[i, :n].tolist()] == single_spans
        assert (spans[i, n:] == 0).all()


invalid_chars = st.characters(exclude_characters="ACGTN", codec="utf-8")


@given(seqs=st.lists(dna(), min_size=1, max_size=4), data=st.data(), bad=invalid_chars)
def test_invalid_character_raises_sequence_error_with_location(seqs, data, bad):
    index = data.draw(st.integers(0, len(seqs) - 1))
    position = data.draw(st.integers(0, len(seqs[index])))
    seqs = list(seqs)
    seqs[index] = seqs[index][:position] + bad + seqs[index][position:]
    with pytest.raises(SequenceError) as info:
        tokenizer().batch_encode(seqs)
    assert (info.value.index, info.value.position, info.value.char) == (index, position, bad)
    assert f"sequence {index}, position {position}" in str(info.value)


def test_training_validates_its_corpus():
    with pytest.raises(SequenceError, match="sequence 1, position 2") as info:
        BPETokenizer.train(["ACGT", "ACXT"], 20)
    assert (info.value.index, info.value.char) == (1, "X")
    with pytest.raises(SequenceError, match="sequence 0 is empty"):
        BPETokenizer.train([""], 20)


def test_lowercase_only_with_uppercase():
    with pytest.raises(SequenceError, match="uppercase=True"):
        tokenizer().encode("ACgt")
    with pytest.raises(SequenceError, match="uppercase=True"):
        BPETokenizer.train([s.lower() for s in corpus()], 50)
    tok = tokenizer(uppercase=True)
    seq = corpus()[0][:300]
    assert tok.encode(seq.lower()) == tok.encode(seq) == tokenizer().encode(seq)
    # Soft-masked training data learns what its uppercase version learns.
    soft = BPETokenizer.train([s.lower() for s in corpus()], 200, uppercase=True)
    assert soft.vocabulary == tokenizer().vocabulary


def test_iupac_codes_map_to_n_only_when_asked():
    with pytest.raises(SequenceError, match="iupac_to_n=True"):
        tokenizer().encode("ACRT")
    tok = tokenizer(iupac_to_n=True)
    assert tok.encode("ATGGCCRYATGGCC") == tok.encode("ATGGCCNNATGGCC")


def test_layout_of_the_smallest_vocabulary():
    tok = BPETokenizer.train(corpus(), 11)
    assert tok.vocabulary == (*SPECIALS, "A", "C", "G", "T", "N")
    assert (tok.unk_id, tok.pad_id, tok.mask_id, tok.cls_id, tok.eos_id, tok.bos_id) == (
        0,
        1,
        2,
        3,
        4,
        5,
    )
    assert tok.special_ids == frozenset(range(6))
    assert tok.encode("GATNC") == [3, 8, 6, 9, 10, 7]


@pytest.mark.parametrize("vocab_size", [12, 40, 200, 1000])
def test_vocab_size_is_respected_and_merges_are_learned(vocab_size):
    tok = tokenizer(vocab_size)
    assert 11 < tok.vocab_size <= vocab_size
    assert tok.vocabulary[:11] == (*SPECIALS, "A", "C", "G", "T", "N")
    assert len(set(tok.vocabulary)) == tok.vocab_size
    assert all(len(t) > 1 and t.strip("ACGT") == "" for t in tok.vocabulary[11:])


def test_a_frequent_motif_becomes_one_token():
    # ATGGCC 400 times among random bases, each copy flanked differently.
    rng = np.random.default_rng(5)
    flanks = ["".join(rng.choice(list("ACGT"), rng.integers(1, 4))) for _ in range(400)]
    tok = BPETokenizer.train(["".join(f + "ATGGCC" for f in flanks)], 100)
    assert "ATGGCC" in tok.vocabulary
    assert tok.encode("ATGGCC") == [tok.cls_id, tok.token_to_id("ATGGCC")]


@pytest.mark.parametrize("max_token_length", [1, 2, 4, 7])
def test_max_token_length_caps_learned_tokens(max_token_length):
    tok = BPETokenizer.train(corpus(), 300, max_token_length=max_token_length)
    assert max(map(len, tok.vocabulary[6:])) == max_token_length
    seq = corpus()[2]
    assert tok.decode(tok.encode(seq)) == seq


def test_training_is_deterministic():
    a = BPETokenizer.train(corpus(1), 300)
    b = BPETokenizer.train(list(corpus(1)), 300)
    assert a.vocabulary == b.vocabulary
    assert a.to_config() == b.to_config()


@pytest.mark.parametrize(
    "vocab_size,error", [(10, ValueError), (0, ValueError), (12.0, TypeError), (True, TypeError)]
)
def test_bad_vocab_size(vocab_size, error):
    with pytest.raises(error, match="vocab_size"):
        BPETokenizer.train(corpus(), vocab_size)


def test_empty_corpus_is_an_error():
    with pytest.raises(ValueError, match="empty corpus"):
        BPETokenizer.train([], 100)
    with pytest.raises(ValueError, match="empty corpus"):
        BPETokenizer.train(iter(()), 100)
    with pytest.raises(TypeError, match="one string"):
        BPETokenizer.train("ACGT", 100)


def test_token_nucleotides_and_mask_span():
    tok = tokenizer()
    sizes = tok.token_nucleotides
    assert sizes.dtype == np.int32 and sizes.shape == (tok.vocab_size,)
    assert sizes[:6].tolist() == [0] * 6
    assert sizes[6:].tolist() == [len(t) for t in tok.vocabulary[6:]]
    assert tok.mask_span == 1


@pytest.mark.parametrize("tokens", [64, 256, 1024])
def test_windows_of_nucleotides_for_tokens_make_about_that_many_tokens(tokens):
    tok = tokenizer(1000)
    bases = tok.nucleotides_for_tokens(tokens)
    assert isinstance(bases, int) and bases > tokens - 1  # merges make tokens longer than 1
    text = "".join(corpus())
    windows = [text[i : i + bases] for i in range(0, len(text) - bases, bases)]
    counts = [len(tok.encode(w)) for w in windows]
    assert abs(np.mean(counts) / tokens - 1) < 0.25


def test_nucleotides_for_tokens_is_at_least_one():
    assert tokenizer().nucleotides_for_tokens(2) >= 1
    assert tokenizer(prepend_cls=False).nucleotides_for_tokens(1) >= 1
    with pytest.raises(ValueError, match="no room"):
        tokenizer().nucleotides_for_tokens(1)


def test_without_cls():
    tok, with_cls = tokenizer(prepend_cls=False), tokenizer()
    seq = corpus()[1][:200]
    assert tok.encode(seq) == with_cls.encode(seq)[1:]
    assert tok.decode(tok.encode(seq)) == seq


def test_sequence_that_does_not_fit_is_named():
    tok = tokenizer()
    n = len(tok.encode("ACGTAC" * 10))
    with pytest.raises(SequenceTooLongError, match=f"sequence 1 has {n} tokens") as info:
        tok.batch_encode(["ACG", "ACGTAC" * 10], length=n - 1)
    assert info.value.index == 1


def test_decode_drops_specials_and_rejects_ids_outside_the_vocabulary():
    tok = tokenizer()
    a, c = tok.token_to_id("A"), tok.token_to_id("C")
    assert tok.decode([tok.cls_id, a, tok.mask_id, c, tok.pad_id, tok.pad_id]) == "AC"
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode([3, tok.vocab_size])


def test_config_round_trips_through_json():
    tok = tokenizer(iupac_to_n=True)
    config = json.loads(json.dumps(tok.to_config()))
    back = BPETokenizer.from_config(config)
    assert back.vocabulary == tok.vocabulary
    assert back.to_config() == tok.to_config()
    assert back.nucleotides_for_tokens(500) == tok.nucleotides_for_tokens(500)
    seqs = [s[:400] for s in corpus()[:10]] + ["ACRTN"]
    np.testing.assert_array_equal(back.batch_encode(seqs), tok.batch_encode(seqs))


def test_save_and_load(tmp_path):
    tok = tokenizer(uppercase=True)
    save_tokenizer(tok, tmp_path / "tok.json")
    back = load_tokenizer(tmp_path / "tok.json")
    assert type(back) is BPETokenizer
    assert (back.vocabulary, back.uppercase, back.prepend_cls) == (tok.vocabulary, True, True)
    seqs = [s[:300].lower() for s in corpus()[:5]]
    np.testing.assert_array_equal(back.batch_encode(seqs), tok.batch_encode(seqs))


def test_config_that_is_not_this_layout_is_refused():
    config = tokenizer().to_config()
    model = json.loads(config["tokenizer_json"])
    model["model"]["vocab"]["A"], model["model"]["vocab"]["C"] = 7, 6
    with pytest.raises(ValueError, match="must start with"):
        BPETokenizer.from_config({**config, "tokenizer_json": json.dumps(model)})
    with pytest.raises(ValueError, match="not a Hugging Face BPE"):
        BPETokenizer.from_config({**config, "tokenizer_json": "{}"})
    with pytest.raises(ValueError, match="nucleotides_per_token"):
        BPETokenizer.from_config({**config, "nucleotides_per_token": 0.5})


def test_repr_shows_size_and_options():
    text = repr(tokenizer(40, uppercase=True))
    assert text.startswith("BPETokenizer(")
    assert "vocab_size=40" in text and "uppercase=True" in text and "iupac_to_n=False" in text


def test_bpe_tokenizer_is_a_tokenizer():
    assert isinstance(tokenizer(), Tokenizer)


def test_missing_hugging_face_tokenizers_is_a_clear_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "tokenizers", None)  # `import tokenizers` now fails
    with pytest.raises(ImportError, match=r"pip install 'codonnt-eqx\[bpe\]'"):
        BPETokenizer.train(["ACGT"], 20)
    with pytest.raises(ImportError, match=r"codonnt-eqx\[bpe\]"):
        BPETokenizer.from_config(tokenizer().to_config())


def test_package_imports_without_hugging_face_tokenizers():
    code = (
        "import sys; sys.modules['tokenizers'] = None\n"
        "import codonnt_eqx\n"
        "assert codonnt_eqx.BPETokenizer.__name__ == 'BPETokenizer'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
