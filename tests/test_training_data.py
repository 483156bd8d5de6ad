"""The genome window sampler: determinism, process slices, the validation split, strands,
mixture weights, N handling and the errors a user meets. Small generated genomes only.

The oracles are written here from the rules: a dict reverse complement, a per-character
normaliser, the held-out rule in `Decimal`, and tests/reference_tokenizer.py for tokens.
"""

import dataclasses
import gzip
import io
import math
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from codonnt_eqx import FastaError, KmerTokenizer
from codonnt_eqx.training._data import CorpusError, GenomeCorpus, WindowCoordinates
from reference_tokenizer import reference_encode

TOK = KmerTokenizer(3)
PAD = TOK.pad_id
COMPLEMENT = {"A": "T", "C": "G", "G": "C", "T": "A", "N": "N"}


def reverse_complement(seq: str) -> str:
    return "".join(COMPLEMENT[base] for base in reversed(seq))


def normalise(seq: str) -> str:
    return "".join("N" if c in "RYSWKMBDHV" else c for c in seq.upper())


def held_out(n: int, fraction: float, min_bases: int) -> int:
    if fraction == 0:
        return 0
    h = math.ceil(Decimal(str(fraction)) * n)
    return max(h, min_bases) if n >= 2 * min_bases else h


def fasta(records, width=60) -> io.BytesIO:
    """A FASTA stream, sequence lines wrapped at `width` as genome files are."""
    lines = []
    for name, seq in records:
        lines.append(f">{name} some description")
        lines += [seq[i : i + width] for i in range(0, len(seq), width)]
    return io.BytesIO(("\n".join(lines) + "\n").encode())


def random_dna(rng, n, alphabet="ACGT"):
    return "".join(rng.choice(list(alphabet), size=n))


def corpus_of(genomes, **options) -> GenomeCorpus:
    """genomes: {file name: [(record name, sequence), ...]}."""
    return GenomeCorpus.from_fasta(
        [fasta(records) for records in genomes.values()], names=list(genomes), **options
    )


def expected_row(seq: str, window_tokens: int, k: int) -> list[int]:
    ids = reference_encode(seq, k)[:window_tokens]
    return ids + [PAD] * (window_tokens - len(ids))


@pytest.fixture(scope="module")
def genomes():
    rng = np.random.default_rng(1)
    return {
        "plant": [
            ("chr1", random_dna(rng, 5000, "ACGTacgt")),
            ("chr2", random_dna(rng, 3000, "ACGTN")),
        ],
        "bacterium": [("chromosome", random_dna(rng, 2000)), ("plasmid", random_dna(rng, 400))],
    }


@pytest.fixture(scope="module")
def corpus(genomes):
    return corpus_of(genomes, validation_fraction=0.1, validation_min_bases=60)


SAMPLE = dict(window_tokens=21, tokenizer=TOK)  # 60 bases per window


# -- determinism and processes -----------------------------------------------------------------


def test_batch_is_a_function_of_seed_and_step(genomes, corpus):
    first = corpus.batch(7, 3, 16, **SAMPLE)
    assert first.shape == (16, 21) and first.dtype == np.int32
    assert (first[:, 0] == TOK.cls_id).all()
    # A corpus rebuilt from the same files (no state carried between calls or objects).
    again = corpus_of(genomes, validation_fraction=0.1, validation_min_bases=60)
    np.testing.assert_array_equal(again.batch(7, 3, 16, **SAMPLE), first)
    assert not np.array_equal(corpus.batch(7, 4, 16, **SAMPLE), first)
    assert not np.array_equal(corpus.batch(8, 3, 16, **SAMPLE), first)


def test_an_example_depends_on_its_index_not_the_batch_size(corpus):
    np.testing.assert_array_equal(
        corpus.batch(0, 5, 8, **SAMPLE), corpus.batch(0, 5, 24, **SAMPLE)[:8]
    )


@pytest.mark.parametrize("process_count", [2, 3, 6])
def test_process_slices_concatenate_to_the_global_batch(corpus, process_count):
    whole = corpus.batch(1, 2, 12, **SAMPLE)
    parts = [
        corpus.batch(1, 2, 12, **SAMPLE, process_index=p, process_count=process_count)
        for p in range(process_count)
    ]
    assert all(part.shape == (12 // process_count, 21) for part in parts)
    np.testing.assert_array_equal(np.concatenate(parts), whole)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(batch_size=10, process_count=4), "batch_size 10 does not divide by process_count 4"),
        (dict(batch_size=8, process_count=4, process_index=4), "process_index 4 is not below"),
        (dict(batch_size=0), "batch_size must be at least 1"),
    ],
)
def test_bad_process_slices_are_refused(corpus, kwargs, message):
    with pytest.raises(ValueError, match=message):
        corpus.batch(0, 0, **kwargs, **SAMPLE)
    with pytest.raises(ValueError, match=message):  # on the call, not the first next()
        corpus.validation_batches(**kwargs, **SAMPLE)


# -- windows: where they come from and what they contain -------------------------------------


@given(
    lengths=st.lists(st.lists(st.integers(1, 400), min_size=1, max_size=3), min_size=1, max_size=3),
    window_tokens=st.integers(2, 40),
    k=st.integers(1, 3),
    fraction=st.sampled_from([0, 0.01, 0.1, 0.5]),
    min_bases=st.integers(0, 60),
    seed=st.integers(0, 2**32),
)
@example(lengths=[[300]], window_tokens=2, k=3, fraction=0.01, min_bases=0, seed=0)
def test_windows_are_the_genome_read_on_either_strand(
    lengths, window_tokens, k, fraction, min_bases, seed
):
    rng = np.random.default_rng(seed)
    genomes = {
        f"file{f}": [(f"r{r}", random_dna(rng, n, "ACGTacgtNRy")) for r, n in enumerate(ns)]
        for f, ns in enumerate(lengths)
    }
    clean = {f: [normalise(s) for _, s in recs] for f, recs in genomes.items()}
    if any(set("".join(seqs)) == {"N"} for seqs in clean.values()):
        with pytest.raises(CorpusError, match="bases are N"):
            corpus_of(genomes)
        return
    corpus = corpus_of(
        genomes, validation_fraction=fraction, validation_min_bases=min_bases, max_n_fraction=1.0
    )
    tok = KmerTokenizer(k)
    length = (window_tokens - 1) * k
    train = {
        f: [len(s) - held_out(len(s), fraction, min_bases) for s in seqs]
        for f, seqs in clean.items()
    }
    if any(max(parts) < length for parts in train.values()):
        with pytest.raises(CorpusError, match=f"no record is long enough.*{length} bases"):
            corpus.batch(seed, 0, 4, window_tokens=window_tokens, tokenizer=tok)
        return
    coords = corpus.batch_coordinates(seed, 0, 6, window_tokens=window_tokens, tokenizer=tok)
    tokens = corpus.batch(seed, 0, 6, window_tokens=window_tokens, tokenizer=tok)
    assert coords.length == length
    for i in range(6):
        f, r, start = int(coords.file[i]), int(coords.record[i]), int(coords.start[i])
        name = corpus.names[f]
        assert 0 <= start and start + length <= train[name][r]  # not in the held-out part
        window = clean[name][r][start : start + length]
        if coords.reverse[i]:
            window = reverse_complement(window)
        assert tokens[i].tolist() == expected_row(window, window_tokens, k)


def test_training_windows_reach_but_never_cross_the_held_out_region():
    # 140 training bases, 135-base windows: 6 starts, all seen in 4000 draws (a miss has
    # probability below 6 * (5/6)^4000).
    seq = random_dna(np.random.default_rng(0), 200)
    corpus = corpus_of({"g": [("r", seq)]}, validation_fraction=0.3)  # holds out 60 bases
    coords = corpus.batch_coordinates(0, 0, 4000, window_tokens=46, tokenizer=TOK)
    assert sorted(set(coords.start.tolist())) == [0, 1, 2, 3, 4, 5]
    assert corpus.held_out_regions()[0].start == 140


def test_reverse_complement_matches_a_simple_implementation(corpus, genomes):
    coords = corpus.batch_coordinates(3, 1, 64, **SAMPLE)
    assert 0 < coords.reverse.sum() < 64
    windows = corpus.window_sequences(coords)
    clean = {f: [normalise(s) for _, s in recs] for f, recs in genomes.items()}
    for i, window in enumerate(windows):
        seq = clean[corpus.names[coords.file[i]]][coords.record[i]]
        forward = seq[coords.start[i] : coords.start[i] + coords.length]
        assert window == (reverse_complement(forward) if coords.reverse[i] else forward)


def test_lowercase_and_iupac_codes_are_stored_as_upper_case_and_n():
    seq = "acgtRYSWKMBDHVrysacgtnNACGTAC"
    corpus = corpus_of({"g": [("r", seq)]}, validation_fraction=0, max_n_fraction=1.0)
    coords = WindowCoordinates(
        np.array([0, 0]), np.array([0, 0]), np.array([0, 0]), np.array([False, True]), len(seq)
    )
    expected = "ACGTNNNNNNNNNNNNNACGTNNACGTAC"
    assert corpus.window_sequences(coords) == [expected, reverse_complement(expected)]
    assert corpus.describe()[0].n_fraction == expected.count("N") / len(seq)


def test_windows_with_too_many_n_are_redrawn():
    rng = np.random.default_rng(2)
    seq = "N" * 300 + random_dna(rng, 300)  # most windows near the start are mostly N
    corpus = corpus_of({"g": [("r", seq)]}, validation_fraction=0, max_n_fraction=0.25)
    coords = corpus.batch_coordinates(0, 0, 300, window_tokens=34, tokenizer=TOK)  # 99 bases
    n_counts = [w.count("N") for w in corpus.window_sequences(coords)]
    assert max(n_counts) <= 24  # floor(0.25 * 99)
    assert max(n_counts) > 0  # windows with a few N are kept
    # Without the limit, the same draws would give N-heavy windows: the check above can fail.
    loose = corpus_of({"g": [("r", seq)]}, validation_fraction=0, max_n_fraction=1.0)
    coords = loose.batch_coordinates(0, 0, 300, window_tokens=34, tokenizer=TOK)
    assert max(w.count("N") for w in loose.window_sequences(coords)) > 24


def test_a_file_of_mostly_n_windows_is_named():
    seq = ("N" * 99 + "A") * 3
    corpus = corpus_of({"gappy": [("r", seq)]}, validation_fraction=0)
    with pytest.raises(CorpusError, match="gappy: 10000 windows of 30 bases in a row"):
        corpus.batch(0, 0, 1, window_tokens=11, tokenizer=TOK)


@pytest.mark.parametrize("nucleotides", [None, 2])  # 9 bases: Ns cut; 2 bases: padded
def test_windows_with_n_are_cut_or_padded_to_window_tokens(nucleotides):
    seqs = ["ACGNACGTA", "ACNNN"]
    corpus = corpus_of({"g": [("r", seqs[0]), ("s", seqs[1])]}, validation_fraction=0)
    options = dict(window_tokens=4, tokenizer=TOK, nucleotides_per_window=nucleotides)
    for step in range(20):
        coords = corpus.batch_coordinates(0, step, 4, **options)
        tokens = corpus.batch(0, step, 4, **options)
        for i in range(4):
            window = seqs[coords.record[i]][coords.start[i] : coords.start[i] + coords.length]
            window = reverse_complement(window) if coords.reverse[i] else window
            assert tokens[i].tolist() == expected_row(window, 4, 3)
        assert (tokens[:, -1] == PAD).all() == (nucleotides == 2)
    if nucleotides is None:
        assert (coords.record == 0).all()  # "ACNNN" is shorter than a window


def assert_tokens_are_the_windows(tokens, windows, tokenizer):
    """Rows decode to their windows (a prefix where Ns made more tokens than fit)."""
    for row, window in zip(tokens, windows, strict=True):
        decoded = tokenizer.decode(row)
        assert window.startswith(decoded)
        assert decoded == window or "N" in window


class BadWindow:
    """A tokenizer whose nucleotides_for_tokens answers nonsense."""

    def __init__(self, answer):
        self._inner, self._answer = KmerTokenizer(2), answer

    def nucleotides_for_tokens(self, tokens):
        return self._answer

    def __getattr__(self, name):
        return getattr(self._inner, name)


@pytest.mark.parametrize("answer", [0, -3, 2.5, None, True])
def test_a_tokenizer_with_a_bad_window_answer_is_refused(corpus, answer):
    with pytest.raises(ValueError, match="not a positive int"):
        corpus.batch(0, 0, 2, window_tokens=11, tokenizer=BadWindow(answer))
    # an explicit nucleotides_per_window does not ask the tokenizer
    tokens = corpus.batch(
        0, 0, 2, window_tokens=11, tokenizer=BadWindow(answer), nucleotides_per_window=20
    )
    coords = corpus.batch_coordinates(
        0, 0, 2, window_tokens=11, tokenizer=BadWindow(answer), nucleotides_per_window=20
    )
    assert coords.length == 20 and tokens.shape == (2, 11)
    assert_tokens_are_the_windows(tokens, corpus.window_sequences(coords), KmerTokenizer(2))


def test_a_tokenizer_without_cls_gets_whole_windows(corpus):
    tok = KmerTokenizer(3, prepend_cls=False)
    coords = corpus.batch_coordinates(0, 0, 4, window_tokens=20, tokenizer=tok)
    tokens = corpus.batch(0, 0, 4, window_tokens=20, tokenizer=tok)
    assert coords.length == 60
    assert_tokens_are_the_windows(tokens, corpus.window_sequences(coords), tok)


# -- mixture weights --------------------------------------------------------------------------


def hoeffding_margin(n: int, checks: int, failure: float = 1e-6) -> float:
    """|observed - expected| frequency bound that `checks` two-sided Hoeffding tests of `n`
    draws all hold with probability at least 1 - failure (union bound)."""
    return math.sqrt(math.log(2 * checks / failure) / (2 * n))


def test_mixture_weights_records_and_strands_are_respected(corpus, genomes):
    n = 20_000
    coords = corpus.batch_coordinates(11, 0, n, **SAMPLE)
    margin = hoeffding_margin(n, checks=6)  # 0.021
    # Files with the given weights (the default would be 8000 : 2400 bases).
    weighted = corpus_of(genomes, weights=[1, 3], validation_fraction=0.1)
    w = weighted.batch_coordinates(11, 0, n, **SAMPLE)
    assert abs(np.mean(w.file == 1) - 0.75) < margin
    assert abs(np.mean(coords.file == 0) - 8000 / 10400) < margin
    # Records of a file by their training start positions: chr1 keeps 4500 bases, chr2
    # 2700, so 4441 and 2641 starts of a 60-base window.
    plant = coords.record[coords.file == 0]
    assert abs(np.mean(plant == 0) - 4441 / (4441 + 2641)) < hoeffding_margin(plant.size, 6)
    assert abs(np.mean(coords.reverse) - 0.5) < margin
    # Offsets uniform: chr1's windows start in its first half as often as in its second.
    chr1 = coords.start[(coords.file == 0) & (coords.record == 0)]
    assert abs(np.mean(chr1 < 4441 / 2) - 0.5) < hoeffding_margin(chr1.size, 6)
    # The plasmid (400 bases, validation_min_bases=60 held out) gives windows too.
    assert abs(
        np.mean(coords.record[coords.file == 1] == 1) - 281 / (1741 + 281)
    ) < hoeffding_margin(int(np.sum(coords.file == 1)), 6)


# -- the validation split ---------------------------------------------------------------------


@given(
    n=st.integers(1, 10**6),
    fraction=st.sampled_from([0, 0.001, 0.01, 0.03, 0.1, 0.25, 0.5]),
    min_bases=st.integers(0, 10**4),
)
@example(n=300, fraction=0.01, min_bases=0)  # 0.01 * 300 is 3.0000000000000004 in floats
@example(n=100, fraction=0.01, min_bases=50)  # exactly twice the minimum
@example(n=99, fraction=0.01, min_bases=50)
def test_held_out_region_follows_the_documented_rule(n, fraction, min_bases):
    corpus = GenomeCorpus.from_fasta(
        fasta([("r", "A" * n)], width=10**6),
        validation_fraction=fraction,
        validation_min_bases=min_bases,
    )
    h = held_out(n, fraction, min_bases)
    regions = corpus.held_out_regions()
    assert [(r.start, r.end) for r in regions] == ([(n - h, n)] if h else [])
    (summary,) = corpus.describe()
    assert (summary.train_bases, summary.validation_bases) == (n - h, h)


def test_validation_windows_tile_the_held_out_regions(corpus, genomes):
    coords = corpus.validation_coordinates(**SAMPLE)
    expected = []
    for f, records in enumerate(genomes.values()):
        for r, (_, seq) in enumerate(records):
            n = len(seq)
            h = held_out(n, 0.1, 60)
            expected += [(f, r, start) for start in range(n - h, n - 60 + 1, 60)]
    got = list(
        zip(coords.file.tolist(), coords.record.tolist(), coords.start.tolist(), strict=True)
    )
    assert got == expected
    assert not coords.reverse.any()
    both = corpus.validation_coordinates(**SAMPLE, both_strands=True)
    assert both.start.tolist() == np.repeat(coords.start, 2).tolist()
    assert both.reverse.tolist() == [False, True] * len(expected)
    capped = corpus.validation_coordinates(**SAMPLE, max_windows=5)
    pick = [i * len(expected) // 5 for i in range(5)]
    assert list(zip(capped.file, capped.record, capped.start, strict=True)) == [
        expected[i] for i in pick
    ]


def test_validation_windows_skip_mostly_n_tiles():
    rng = np.random.default_rng(3)
    seq = random_dna(rng, 100) + "N" * 25 + random_dna(rng, 55)  # holds out 90-179
    corpus = corpus_of({"g": [("r", seq)]}, validation_fraction=0.5)
    coords = corpus.validation_coordinates(window_tokens=11, tokenizer=TOK)  # 30 bases
    assert coords.start.tolist() == [120, 150]  # 90-119 has 20 N, 120-149 has 5
    loose = corpus_of({"g": [("r", seq)]}, validation_fraction=0.5, max_n_fraction=1.0)
    assert loose.validation_coordinates(window_tokens=11, tokenizer=TOK).start.tolist() == [
        90,
        120,
        150,
    ]


@pytest.mark.parametrize("process_count", [1, 2])
def test_validation_batches_pad_the_last_batch(corpus, process_count):
    coords = corpus.validation_coordinates(**SAMPLE, both_strands=True)
    rows = coords.file.size  # 2 * (8 + 5 + 3 + 1) = 34
    expected = np.array(
        [expected_row(w, 21, 3) for w in corpus.window_sequences(coords)], dtype=np.int32
    )
    per_process = [
        list(
            corpus.validation_batches(
                8,
                **SAMPLE,
                both_strands=True,
                process_index=p,
                process_count=process_count,
            )
        )
        for p in range(process_count)
    ]
    assert all(len(batches) == math.ceil(rows / 8) for batches in per_process)
    tokens = np.concatenate(
        [np.concatenate([b.tokens for b in bs]) for bs in zip(*per_process, strict=True)]
    )
    is_real = np.concatenate(
        [np.concatenate([b.is_real for b in bs]) for bs in zip(*per_process, strict=True)]
    )
    files = np.concatenate(
        [np.concatenate([b.file for b in bs]) for bs in zip(*per_process, strict=True)]
    )
    assert tokens.shape == (math.ceil(rows / 8) * 8, 21)
    assert is_real.tolist() == [True] * rows + [False] * (tokens.shape[0] - rows)
    np.testing.assert_array_equal(tokens[:rows], expected)
    assert (tokens[rows:] == PAD).all()
    assert files.tolist() == coords.file.tolist() + [-1] * (tokens.shape[0] - rows)


# -- summaries, files and errors --------------------------------------------------------------


def test_plain_and_gzipped_paths_are_described(tmp_path, genomes):
    plain, packed = tmp_path / "plant.fa", tmp_path / "bacterium.fa.gz"
    plain.write_bytes(fasta(genomes["plant"]).getvalue())
    packed.write_bytes(gzip.compress(fasta(genomes["bacterium"]).getvalue()))
    corpus = GenomeCorpus.from_fasta([plain, str(packed)], validation_fraction=0.01)
    plant, bacterium = corpus.describe()
    assert (plant.name, bacterium.name) == (str(plain), str(packed))
    assert (plant.records, plant.bases, bacterium.bases) == (2, 8000, 2400)
    n = sum(normalise(s).count("N") for _, s in genomes["plant"])
    assert plant.n_fraction == n / 8000 and bacterium.n_fraction == 0
    assert plant.weight == 8000 and math.isclose(bacterium.probability, 2400 / 10400)
    assert plant.validation_bases == 50 + 30 and bacterium.validation_bases == 20 + 4
    assert plant.train_bases == 8000 - 80


def test_the_corpus_is_immutable(corpus):
    with pytest.raises(dataclasses.FrozenInstanceError):
        corpus.validation_fraction = 0.2
    with pytest.raises(ValueError, match="read-only"):
        corpus._files[0].bases[0] = ord("A")


@pytest.mark.parametrize(
    "text,error,message",
    [
        (b"", FastaError, "empty.fa: no FASTA records"),
        (b">a\nNNNN\n>b\nnnRY\n", CorpusError, "empty.fa: all 8 bases are N"),
        (b">a\nACGT\n>b\nAC-GT\n", CorpusError, r"empty.fa, record 'b', position 2: .*'-'"),
        (b">a\nACGU\n", CorpusError, r"position 3: invalid character 'U'"),
    ],
)
def test_bad_files_are_named(text, error, message):
    with pytest.raises(error, match=message):
        GenomeCorpus.from_fasta(
            [io.BytesIO(b">ok\nACGT\n"), io.BytesIO(text)], names=["ok", "empty.fa"]
        )


def test_no_record_long_enough_names_the_longest(genomes):
    corpus = corpus_of(genomes, validation_fraction=0.1)
    with pytest.raises(
        CorpusError,
        match=r"bacterium: no record is long enough for one training window of 2997 bases "
        r"\(1000 tokens\); the longest, 'chromosome', has 2000 bases, 1800 of them",
    ):
        corpus.batch(0, 0, 2, window_tokens=1000, tokenizer=TOK)


def test_no_validation_window_says_why(corpus):
    with pytest.raises(CorpusError, match="longest held-out region has 500 bases"):
        corpus.validation_coordinates(window_tokens=200, tokenizer=TOK)


@pytest.mark.parametrize(
    "options,message",
    [
        (dict(weights=[1.0]), "1 weights for 2 files"),
        (dict(weights=[1.0, 0.0]), "weight of b must be a positive finite number, got 0.0"),
        (dict(weights=[-1, 1]), "weight of a must be a positive"),
        (dict(weights=[1, math.inf]), "got inf"),
        (dict(weights=[math.nan, 1]), "got nan"),
        (dict(validation_fraction=0.6), r"validation_fraction must be a number in \[0, 0.5\]"),
        (dict(validation_fraction=-0.01), "validation_fraction must be"),
        (dict(max_n_fraction=1.5), "max_n_fraction must be"),
        (dict(names=["a", "a"]), "two files are named 'a'"),
    ],
)
def test_bad_arguments_are_refused_before_reading(options, message):
    class Unreadable(io.BytesIO):
        def read(self, *args):
            raise AssertionError("a file was read before the arguments were checked")

    options = {"names": ["a", "b"], **options}
    with pytest.raises(ValueError, match=message):
        GenomeCorpus.from_fasta([Unreadable(), Unreadable()], **options)


def test_aligned_forward_corpus_keeps_the_reading_frame(tmp_path):
    """alignment=3, both_strands=False: every training and validation window starts at a codon
    of its record, on the given strand, and a codon tokenizer reads it in frame."""
    from codonnt_eqx import CodonTokenizer

    rng = np.random.default_rng(0)
    genes = ["".join(rng.choice(list("ACGT"), size=n)) for n in (301, 452, 600, 999)]
    path = tmp_path / "cds.fa"
    path.write_text("".join(f">g{i}\n{g}\n" for i, g in enumerate(genes)))
    corpus = GenomeCorpus.from_fasta(path, validation_fraction=0.2, alignment=3, both_strands=False)
    tok = CodonTokenizer()
    for step in range(20):
        coords = corpus.batch_coordinates(0, step, 8, window_tokens=11, tokenizer=tok)
        assert not coords.reverse.any()
        assert (coords.start % 3 == 0).all()
        for r, start, window in zip(
            coords.record, coords.start, corpus.window_sequences(coords), strict=True
        ):
            assert genes[r][start : start + 30] == window
    held = corpus.held_out_regions()
    assert len(held) == 4 and all(region.start % 3 == 0 for region in held)
    assert all(region.end - region.start >= 0.2 * len(genes[i]) for i, region in enumerate(held))
    val = corpus.validation_coordinates(window_tokens=11, tokenizer=tok)
    assert val.start.size > 0 and (val.start % 3 == 0).all()
    # the default corpus draws from both strands at any offset
    free = GenomeCorpus.from_fasta(path, validation_fraction=0.2)
    coords = free.batch_coordinates(0, 0, 64, window_tokens=11, tokenizer=tok)
    assert coords.reverse.any() and (coords.start % 3 != 0).any()
