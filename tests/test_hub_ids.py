"""Hub ids as checkpoint names: read offline from a Hugging Face cache folder built here (the
`models--org--name/{refs,snapshots}` layout), downloaded through a stubbed `huggingface_hub`,
and a missing model's error gives the exact `hf download` command."""

import fnmatch
import shutil

import jax.numpy as jnp
import numpy as np
import pytest

from codonnt_eqx import CheckpointError, from_pretrained, save_pretrained
from codonnt_eqx.cli import main
from helpers import TOKENIZERS, V2, perturbed_model, write_jax_layout

REPO = "InstaDeepAI/nucleotide-transformer-v2-50m-3mer-multi-species"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
OLDER = "fedcba9876543210fedcba9876543210fedcba98"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A hub cache with two snapshots of REPO: `main` (COMMIT) and tag v1 (OLDER)."""
    root = tmp_path / "hf" / "hub"
    repo = root / "models--InstaDeepAI--nucleotide-transformer-v2-50m-3mer-multi-species"
    for commit, seed in ((COMMIT, 0), (OLDER, 1)):
        save_pretrained(perturbed_model(V2, seed=seed), TOKENIZERS[V2], repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    (repo / "refs" / "v1").write_text(OLDER + "\n")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.chdir(tmp_path)
    return root


def _embed(model, tok):
    return np.asarray(model(jnp.asarray(tok.encode("ATGGCCAAATTT"))).embeddings)


def test_a_hub_id_loads_from_the_cache_at_any_revision(cache, monkeypatch):
    main_model, tok = from_pretrained(REPO)
    np.testing.assert_array_equal(_embed(main_model, tok), _embed(perturbed_model(V2, 0), tok))
    for revision in ("v1", OLDER):
        older, _ = from_pretrained(REPO, revision=revision)
        np.testing.assert_array_equal(_embed(older, tok), _embed(perturbed_model(V2, 1), tok))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))  # takes precedence over HF_HOME
    monkeypatch.setenv("HF_HOME", "/nonexistent")
    assert from_pretrained(REPO)[0].config == main_model.config


def test_a_missing_model_names_the_download_command(cache):
    with pytest.raises(CheckpointError, match="hf download InstaDeepAI/other-model"):
        from_pretrained("InstaDeepAI/other-model")
    with pytest.raises(CheckpointError, match=f"hf download {REPO} --revision v9"):
        from_pretrained(REPO, revision="v9")


def stub_hub(monkeypatch, remote):
    """`snapshot_download` serving the files of folder `remote` that match the patterns."""
    hub = pytest.importorskip("huggingface_hub")
    calls = []

    def snapshot_download(repo_id, revision=None, allow_patterns=None):
        calls.append((repo_id, revision, allow_patterns))
        local = remote.parent / f"{remote.name}-local"
        for file in remote.rglob("*"):
            name = file.relative_to(remote).as_posix()
            if file.is_file() and any(fnmatch.fnmatch(name, p) for p in allow_patterns or ["*"]):
                (local / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(file, local / name)
        local.mkdir(exist_ok=True)
        return str(local)

    monkeypatch.setattr(hub, "snapshot_download", snapshot_download)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    return calls


def test_a_stubbed_hub_downloads_only_the_files_needed(tmp_path, monkeypatch, cache):
    remote = tmp_path / "remote"
    save_pretrained(perturbed_model(V2, seed=2), TOKENIZERS[V2], remote)
    for extra in ("pytorch_model.bin", "tf_model.h5", "flax_model.msgpack", "README.md"):
        (remote / extra).write_bytes(b"not needed")
    calls = stub_hub(monkeypatch, remote)
    model, tok = from_pretrained("someone/fresh-model", revision="main")
    np.testing.assert_array_equal(_embed(model, tok), _embed(perturbed_model(V2, 2), tok))
    [(repo_id, revision, patterns)] = calls
    assert (repo_id, revision) == ("someone/fresh-model", "main")
    fetched = {p.name for p in (tmp_path / "remote-local").iterdir()}
    assert fetched == {"config.json", "vocab.txt", "model.safetensors"}


def test_a_repository_without_safetensors_sends_its_other_weights(tmp_path, monkeypatch, cache):
    # InstaDeep's JAX layout only: the first two kinds of weights are asked for and absent.
    remote = tmp_path / "remote"
    write_jax_layout(perturbed_model(V2, seed=3), remote)
    (remote / "tf_model.h5").write_bytes(b"not needed")
    calls = stub_hub(monkeypatch, remote)
    model, tok = from_pretrained("someone/jax-model")
    np.testing.assert_array_equal(_embed(model, tok), _embed(perturbed_model(V2, 3), tok))
    assert len(calls) == 3 and calls[-1][2] == ["jax_model/*"]
    assert not (tmp_path / "remote-local" / "tf_model.h5").exists()


def test_the_cli_takes_a_hub_id_as_checkpoint(cache, tmp_path, capsys):
    fasta = tmp_path / "g.fa"
    fasta.write_text(">g\nATGGCCAAATTTGGGTAA\n")
    assert main(["embed", str(fasta), "--checkpoint", REPO, "-o", str(tmp_path / "e.npz")]) == 0
    assert (tmp_path / "e.npz").exists()
    assert main(["embed", str(fasta), "--checkpoint", "nobody/nothing"]) == 1
    assert "hf download nobody/nothing" in capsys.readouterr().err
