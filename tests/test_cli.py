import pathlib

from codonnt_eqx import read_fasta
from codonnt_eqx._cli import main
from reference_tokenizer import reference_tokens

EXAMPLE = pathlib.Path(__file__).parent.parent / "examples" / "cds.fasta"


def test_tokenize_summarises_the_example(capsys):
    assert main(["tokenize", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    records = read_fasta(EXAMPLE)
    bases = sum(len(r.sequence) for r in records)
    tokens = sum(len(reference_tokens(r.sequence, 3)) for r in records)
    n = sum(r.sequence.count("N") for r in records)
    assert f"{len(records)} sequences, {bases} bases -> {tokens} tokens" in out
    assert f"{n} N" in out
    for r in records:
        assert r.name in out


def test_bad_input_exits_with_a_message(tmp_path, capsys):
    bad = tmp_path / "bad.fa"
    bad.write_text(">x\nACGTXACGT\n")
    assert main(["tokenize", str(bad)]) == 1
    assert "position 4: invalid character 'X'" in capsys.readouterr().err
    assert main(["tokenize", str(tmp_path / "missing.fa")]) == 1


def test_embed_runs_the_model_and_says_it_is_random(capsys):
    assert main(["embed", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert "RANDOMLY INITIALISED" in out
    records = read_fasta(EXAMPLE)
    for r in records:
        n = len(reference_tokens(r.sequence, 3))
        assert f"[{n}, 512]" in out
    assert "tokens/s" in out and "compile" in out


def test_embed_with_a_checkpoint(tmp_path, capsys):
    from codonnt_eqx import KmerTokenizer, save_pretrained
    from helpers import V2, perturbed_model

    save_pretrained(perturbed_model(V2), KmerTokenizer(3), tmp_path / "ckpt")
    assert main(["embed", str(EXAMPLE), "--checkpoint", str(tmp_path / "ckpt")]) == 0
    out = capsys.readouterr().out
    assert "RANDOMLY" not in out and "ckpt" in out
    first = read_fasta(EXAMPLE)[0].sequence
    assert f"[{len(reference_tokens(first, 3))}, 32]" in out
    assert main(["embed", str(EXAMPLE), "--checkpoint", str(tmp_path / "nope")]) == 1
