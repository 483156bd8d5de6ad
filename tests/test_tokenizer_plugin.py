"""A tokenizer written in one file (here, in this test) is picked up by pretraining, saving and
loading, fine-tuning and the tokenization experiment without changes anywhere else."""

import csv
import itertools

import jax.numpy as jnp
import numpy as np
import pytest

from codonnt_eqx import CheckpointError, ModelConfig, Tokenizer, from_pretrained, model_config_for
from codonnt_eqx.experiments import Arm, ComparisonConfig, compare_tokenizations
from codonnt_eqx.finetune import FinetuneConfig, finetune, load_task
from codonnt_eqx.training import GenomeCorpus, PretrainConfig, pretrain

PAIRS = ["".join(p) for p in itertools.product("ACGT", repeat=2)]


class PairTokenizer:
    """Toy: non-overlapping base pairs, a leftover or N as a single base; specials in an order
    no other tokenizer here uses (<pad> 0, <mask> 1, <cls> 2, <unk> 3)."""

    vocabulary = ("<pad>", "<mask>", "<cls>", "<unk>", *PAIRS, *"ACGTN")
    vocab_size = len(vocabulary)
    pad_id, mask_id, cls_id, unk_id = 0, 1, 2, 3
    special_ids = frozenset(range(4))
    mask_span = 1

    @property
    def token_nucleotides(self):
        return np.array([0 if i < 4 else len(t) for i, t in enumerate(self.vocabulary)], np.int32)

    def nucleotides_for_tokens(self, tokens):
        return 2 * (tokens - 1)

    def _tokens(self, seq):
        out, i = [], 0
        while i < len(seq):
            pair = seq[i : i + 2]
            if len(pair) == 2 and "N" not in pair:
                out.append(pair)
                i += 2
            else:
                out.append(seq[i])
                i += 1
        return out

    def batch_encode_with_spans(self, sequences, length=None):
        rows = []
        for seq in sequences:
            if not seq or set(seq) - set("ACGTN"):
                raise ValueError(f"not DNA: {seq!r}")
            tokens, start, spans = self._tokens(seq), 0, [(0, 0)]
            for t in tokens:
                spans.append((start, start + len(t)))
                start += len(t)
            rows.append(([2] + [self.vocabulary.index(t) for t in tokens], spans))
        length = length or max(len(r[0]) for r in rows)
        ids = np.zeros((len(rows), length), np.int32)
        out = np.zeros((len(rows), length, 2), np.int32)
        for i, (row, spans) in enumerate(rows):
            if len(row) > length:
                raise ValueError("too long")
            ids[i, : len(row)], out[i, : len(row)] = row, spans
        return ids, out

    def batch_encode(self, sequences, length=None):
        return self.batch_encode_with_spans(sequences, length)[0]

    def encode(self, sequence):
        return self.batch_encode([sequence])[0].tolist()

    def decode(self, ids):
        return "".join(self.vocabulary[i] for i in ids if i >= 4)

    def to_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls()


BODY = ModelConfig(10, 32, 1, 2, 64)  # the size: only its body is kept


def write_genes(path, n=40, seed=0):
    rng = np.random.default_rng(seed)
    with open(path, "w") as f:
        for i in range(n):
            f.write(
                f">g{i}\n{''.join(rng.choice(list('ACGT'), size=int(rng.integers(150, 400))))}\n"
            )
    return path


def write_task(path, n=40, seed=1):
    rng = np.random.default_rng(seed)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sequence", "label", "split"])
        for i in range(n):
            seq = "".join(rng.choice(list("ACGT"), size=int(rng.integers(30, 90))))
            w.writerow([seq, seq.count("G") / len(seq), ("train", "train", "val", "test")[i % 4]])
    return path


@pytest.mark.slow
def test_a_toy_tokenizer_pretrains_saves_finetunes_and_is_compared(tmp_path):
    tok = PairTokenizer()
    assert isinstance(tok, Tokenizer)
    config = model_config_for(tok, BODY)
    assert (config.vocab_size, config.pad_token_id, config.mask_token_id) == (25, 0, 1)
    fasta = write_genes(tmp_path / "genes.fa")

    # pretraining, and the saved model comes back with this tokenizer
    corpus = GenomeCorpus.from_fasta(fasta, validation_fraction=0.2, validation_min_bases=64)
    recipe = PretrainConfig(
        seq_length=33,
        tokens_per_batch=33 * 4,
        steps=3,
        warmup_steps=1,
        dtype="float32",
        eval_every=3,
        eval_windows=4,
        checkpoint_every=3,
        log_every=1,
    )
    run = pretrain(config, tok, corpus, tmp_path / "run", recipe, progress=False, log=print)
    with pytest.raises(CheckpointError, match="PairTokenizer.*register"):
        from_pretrained(tmp_path / "run" / "model")  # a record never imports its class
    model, back = from_pretrained(tmp_path / "run" / "model", tokenizer_classes=[PairTokenizer])
    assert type(back).__name__ == "PairTokenizer" and back.vocabulary == tok.vocabulary
    ids = jnp.asarray(tok.encode("ACGTNAC"))
    np.testing.assert_array_equal(model(ids).logits, run.model(ids).logits)

    # fine-tuning (the frozen probe) on a sequence-level task
    task = load_task(write_task(tmp_path / "gc.csv"), "regression")
    result = finetune(model, back, task, FinetuneConfig(mode="probe", epochs=2), progress=False)
    assert np.isfinite(result.test["spearman"])

    # the experiment, with bits per nucleotide over the bases the masked tokens cover
    comparison = ComparisonConfig(
        size=BODY,
        window_nucleotides=64,
        batch_windows=4,
        steps=2,
        warmup_steps=1,
        eval_every=2,
        eval_windows=4,
        pll_windows=1,
        probe_epochs=2,
    )
    arms = [Arm("pairs", tok)]
    rows = compare_tokenizations(arms, [fasta], tmp_path / "exp", comparison, tasks={"gc": task})
    (row,) = rows
    assert row["tokens_per_window"] == 33 and row["vocab_size"] == 25
    assert 0 < row["bits_per_nucleotide"] < 10 and 0 < row["pll_bits_per_nucleotide"] < 10
    assert np.isfinite(row["tasks"]["gc"]) and np.isfinite(row["tasks_random_init"]["gc"])
    assert (tmp_path / "exp" / "results.json").exists()

    # run again into the folder: the finished arm is kept, not retrained
    messages = []
    again = compare_tokenizations(
        arms, [fasta], tmp_path / "exp", comparison, tasks={"gc": task}, log=messages.append
    )
    assert again == rows and any("kept" in m for m in messages)
