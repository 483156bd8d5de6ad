import gzip
import subprocess
import sys

import jax
import pytest

from codonnt_eqx import read_fasta
from codonnt_eqx.cli._main import main
from codonnt_eqx.examples import example_path
from reference_tokenizer import reference_tokens

EXAMPLE = example_path("cds.fasta")


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


def test_embed_random_init_says_it_is_random(capsys):
    assert main(["embed", str(EXAMPLE), "--random-init"]) == 0
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


# ---- errors are one line, never a traceback -------------------------------------------------


@pytest.mark.parametrize(
    "argv,message",
    [
        (["embed", str(EXAMPLE), "--bucket", "0"], "argument --bucket: must be >= 1, got 0"),
        (["embed", str(EXAMPLE), "--batch-size", "0"], "argument --batch-size: must be >= 1"),
        (["embed", str(EXAMPLE), "--batch-size", "two"], "expected an integer, got 'two'"),
        (["embed", str(EXAMPLE), "--attention", "flash"], "argument --attention: invalid"),
        (["tokenize", str(EXAMPLE), "--k", "0"], "argument --k: must be in 1..12, got 0"),
        (["tokenize", str(EXAMPLE), "--k", "13"], "argument --k: must be in 1..12"),
    ],
)
def test_bad_arguments_are_rejected_by_the_parser(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def _one_line_error(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("codonnt-eqx: error: "), captured.err
    return lines[0]


def _bad_inputs(tmp_path):
    (tmp_path / "empty.fa").write_bytes(b"")
    (tmp_path / "binary.fa").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "dir.fa").mkdir()
    (tmp_path / "list_config").mkdir()
    (tmp_path / "list_config" / "config.json").write_text("[1, 2]")
    (tmp_path / "vocab.txt").write_text("<unk>\n<pad>\n")
    fasta = str(EXAMPLE)
    return [
        (["tokenize", str(tmp_path / "missing.fa")], "missing.fa: No such file"),
        (["tokenize", str(tmp_path / "dir.fa")], "dir.fa: Is a directory"),
        (["tokenize", str(tmp_path / "empty.fa")], "no FASTA records"),
        (["tokenize", str(tmp_path / "binary.fa")], "binary.fa"),
        (["embed", fasta, "--checkpoint", str(tmp_path / "nowhere")], "not a folder"),
        (["embed", fasta, "--checkpoint", str(tmp_path / "list_config")], "config.json"),
        (["embed", fasta, "--checkpoint", str(tmp_path)], str(tmp_path)),
    ]


def test_anticipated_errors_are_one_line_without_traceback(tmp_path, capsys):
    for argv, message in _bad_inputs(tmp_path):
        assert main(argv) == 1, argv
        assert message in _one_line_error(capsys), argv


def test_learned_position_model_refuses_long_records_by_name(tmp_path, capsys):
    from codonnt_eqx import KmerTokenizer, save_pretrained
    from helpers import V1, perturbed_model

    save_pretrained(perturbed_model(V1), KmerTokenizer(2, layout="v1"), tmp_path / "v1")
    long = tmp_path / "long.fa"
    long.write_text(">short\nACGTAC\n>long_one\n" + "ACGT" * 30 + "\n")  # 61 tokens > 40
    assert main(["embed", str(long), "--checkpoint", str(tmp_path / "v1")]) == 1
    assert "long_one has 61 tokens" in _one_line_error(capsys)


def test_stdin_dash_reads_a_piped_gzipped_file():
    data = gzip.compress(EXAMPLE.read_bytes())
    run = subprocess.run(
        [sys.executable, "-c", "import sys; from codonnt_eqx.cli import main; sys.exit(main())"]
        + ["tokenize", "-"],
        input=data,
        capture_output=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr.decode()
    assert f"{len(read_fasta(EXAMPLE))} sequences" in run.stdout.decode()


def test_version_and_device_options(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.startswith("codonnt-eqx ")
    fasta = str(example_path("cds.fasta"))
    assert main(["--device", "cpu", "tokenize", fasta]) == 0
    capsys.readouterr()
    if all(d.platform == "cpu" for d in jax.devices()):
        assert main(["--device", "gpu", "tokenize", fasta]) == 1
        assert "--device gpu: no gpu device here" in capsys.readouterr().err
