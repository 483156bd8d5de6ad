"""Files are data: a model folder, an adapter or a cache cannot make Python run code, allocate
what its arrays do not hold, or be used with a model, tokenizer or data it was not made from."""

import json
import sys

import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from codonnt_eqx import (
    CheckpointError,
    CodonTokenizer,
    InputError,
    KmerTokenizer,
    model_config_for,
    save_pretrained,
)
from codonnt_eqx.checkpoints import from_pretrained
from codonnt_eqx.finetune import (
    AdapterError,
    FinetuneConfig,
    Finetuned,
    Head,
    ProvenanceError,
    SequenceHead,
    add_lora,
    finetune,
    load_finetuned,
    load_task,
    save_finetuned,
)
from codonnt_eqx.io import OutputError
from codonnt_eqx.tokenizers import (
    TOKENIZER_FILE,
    TokenizerRecordError,
    register_tokenizer,
    tokenizer_from_record,
    tokenizer_record,
)
from helpers import TOKENIZERS, V2, perturbed_model

HOSTILE_MODULE = "codonnt_hostile_module_for_tests"


@pytest.fixture
def hostile_module(tmp_path, monkeypatch):
    """A module on sys.path whose import leaves a marker file: importing it is running code."""
    marker = tmp_path / "imported.txt"
    (tmp_path / f"{HOSTILE_MODULE}.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\nclass Evil:\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield marker
    sys.modules.pop(HOSTILE_MODULE, None)


@pytest.mark.parametrize(
    "name",
    [
        f"{HOSTILE_MODULE}:Evil",
        f"{HOSTILE_MODULE}:Evil.from_config",
        "this:s",  # standard-library modules with side effects at import
        "antigravity:webbrowser",
        "os:system",
        "codonnt_eqx.tokenizers._codon:CodonTokenizer.from_config",
        "CodonTokenizer ",
    ],
)
def test_a_record_naming_any_other_class_imports_nothing(tmp_path, hostile_module, name):
    folder = tmp_path / "model"
    tok = CodonTokenizer()  # saved with its record (a plain k-mer one needs only vocab.txt)
    save_pretrained(perturbed_model(model_config_for(tok, V2)), tok, folder)
    record = json.loads((folder / TOKENIZER_FILE).read_text())
    (folder / TOKENIZER_FILE).write_text(json.dumps({**record, "class": name}))
    before = set(sys.modules)
    with pytest.raises(CheckpointError, match="is not one this program knows"):
        from_pretrained(folder)
    assert not hostile_module.exists()
    assert {HOSTILE_MODULE, "this", "antigravity"}.isdisjoint(set(sys.modules) - before)


def test_records_of_the_packages_own_classes_load_by_name_and_by_their_old_path():
    record = tokenizer_record(CodonTokenizer(frame=1))
    assert record["class"] == "CodonTokenizer"
    assert tokenizer_from_record(record).frame == 1
    old = {**record, "class": "codonnt_eqx.tokenizers._codon:CodonTokenizer"}
    assert tokenizer_from_record(old).frame == 1


class _Mine(KmerTokenizer):
    """A user's own tokenizer class, defined at module level."""

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def test_a_users_class_loads_when_passed_or_registered():
    record = tokenizer_record(_Mine(2))
    with pytest.raises(TokenizerRecordError, match="register"):
        tokenizer_from_record(record)
    assert type(tokenizer_from_record(record, classes=[_Mine])) is _Mine
    assert type(tokenizer_from_record(record, classes={record["class"]: _Mine})) is _Mine
    register_tokenizer(_Mine)
    assert type(tokenizer_from_record(record)) is _Mine
    with pytest.raises(TypeError):
        register_tokenizer(len)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "change",
    [
        {"uppercase": "false"},  # truthy text where a bool belongs
        {"prepend_cls": 1},
        {"k": "3"},
        {"k": 3.0},
        {"k": 10**9},
        {"k": True},
        {"layout": ["v2"]},
        {"not_an_option": 1},
    ],
)
def test_every_option_read_from_a_record_is_type_and_range_checked(change):
    record = tokenizer_record(KmerTokenizer(3))
    with pytest.raises(TokenizerRecordError, match="rejects its config"):
        tokenizer_from_record({**record, "config": {**record["config"], **change}})


@pytest.mark.parametrize(
    "record",
    [None, [], {"format": 1}, {"format": 1, "class": 3, "config": {}}, {"format": "1"}],
)
def test_malformed_records_are_typed_errors(record):
    with pytest.raises(TokenizerRecordError):
        tokenizer_from_record(record)
    assert issubclass(TokenizerRecordError, InputError)


# -- adapters --------------------------------------------------------------------------------


def _adapter(folder, model=None, mode="lora", tok=None):
    model = perturbed_model(V2) if model is None else model
    tok = TOKENIZERS[V2] if tok is None else tok
    adapted = add_lora(model, rank=2, key=jr.key(1)) if mode == "lora" else model
    head = SequenceHead(Head(V2.embed_dim, 3, None, key=jr.key(2)))
    finetuned = Finetuned(adapted, head, -1, tuple(sorted(tok.special_ids)))
    info = {
        "mode": mode,
        "layer": -1,
        "head": {
            "kind": "sequence",
            "in_features": V2.embed_dim,
            "out_features": 3,
            "hidden": None,
        },
        "lora": {"rank": 2, "alpha": 4.0, "targets": ["query", "value"]},
        "task": {"name": "t", "kind": "classification", "classes": ["a", "b", "c"]},
    }
    save_finetuned(folder, finetuned, tok, info)
    return model, tok, folder / "adapter.safetensors"


def _rewrite_metadata(file, change):
    tensors = load_file(str(file))
    from safetensors import safe_open

    with safe_open(str(file), framework="numpy") as f:
        meta = f.metadata()
    info = json.loads(meta["codonnt_eqx.finetune"])
    change(info)
    save_file(tensors, str(file), metadata={"codonnt_eqx.finetune": json.dumps(info)})


def test_an_adapter_reloads_on_its_own_base_and_refuses_another(tmp_path):
    model, tok, _ = _adapter(tmp_path)
    finetuned, info = load_finetuned(tmp_path, model, tok)
    assert info["provenance"]["base_weights"] and finetuned.head.head.out_features == 3
    other = perturbed_model(V2, seed=5)  # same shapes, other weights: garbage predictions
    with pytest.raises(ProvenanceError, match=r"base weights \w{16}.*base weights \w{16}"):
        load_finetuned(tmp_path, other, tok)
    assert load_finetuned(tmp_path, other, tok, check_base=False)[0] is not None
    with pytest.raises(ProvenanceError, match="tokenizer"):
        load_finetuned(tmp_path, model, KmerTokenizer(3, layout="v1"))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda i: i["head"].update(kind="token"), "head.kind"),  # silently another head
        (lambda i: i.update(mode="probe!"), "mode"),
        (lambda i: i.update(layer=7), "layer"),
        (lambda i: i.update(layer="-1"), "layer"),
        (lambda i: i["head"].update(out_features=-3), "head.out_features"),
        (lambda i: i["head"].update(in_features=10**6), "head.in_features"),
        (lambda i: i["head"].update(hidden=0), "head.hidden"),
        (lambda i: i["lora"].update(rank=2.5), "lora.rank"),
        (lambda i: i["lora"].update(alpha=float("nan")), "lora.alpha"),
        (lambda i: i["lora"].update(targets=["__class__"]), "lora.targets"),
        (lambda i: i["task"].update(classes=["a"]), "task.classes"),
        (lambda i: i.update(label_std=0.0), "label_std"),
    ],
)
def test_every_adapter_metadata_field_is_checked(tmp_path, change, field):
    model, tok, file = _adapter(tmp_path)
    _rewrite_metadata(file, change)
    with pytest.raises(AdapterError, match=f"metadata field {field}"):
        load_finetuned(tmp_path, model, tok)


def test_a_huge_lora_rank_is_refused_before_anything_is_allocated(tmp_path, monkeypatch):
    import equinox as eqx
    import jax

    import codonnt_eqx.finetune._saving as saving

    model, tok, file = _adapter(tmp_path)
    _rewrite_metadata(file, lambda i: i["lora"].update(rank=10**7))  # GBs if allocated
    built = []
    real = saving._template

    def watched(base, info, special):
        arrays = jax.tree.leaves(eqx.filter(base, eqx.is_array))
        built.append(all(isinstance(x, jax.core.Tracer) for x in arrays))
        return real(base, info, special)

    monkeypatch.setattr(saving, "_template", watched)
    shapes = r"saved as F32\[2, 2, 32\].*need F32\[2, 10000000, 32\]"
    with pytest.raises(AdapterError, match=shapes):
        load_finetuned(tmp_path, model, tok)
    assert built == [True]  # only ever traced for its shapes, never built for real


@pytest.mark.parametrize("damage", ["truncate", "garbage", "missing"])
def test_a_corrupt_adapter_file_names_itself(tmp_path, damage):
    model, tok, file = _adapter(tmp_path, mode="probe")
    if damage == "truncate":
        file.write_bytes(file.read_bytes()[:40])
    elif damage == "garbage":
        file.write_bytes(b"\xff" * 64)
    else:
        file.unlink()
    with pytest.raises(AdapterError, match="adapter.safetensors"):
        load_finetuned(tmp_path, model, tok)


# -- the probe's representation cache ----------------------------------------------------------


def _gc_task(folder, n=16):
    rng = np.random.default_rng(0)
    folder.mkdir(exist_ok=True)
    for split, count in (("train", n), ("val", 4), ("test", 4)):
        lines = []
        for i in range(count):
            seq = "".join(rng.choice(list("ACGT"), size=3 * int(rng.integers(5, 12))))
            lines.append(f">{split}{i}|{seq.count('G') / len(seq):.4f}\n{seq}\n")
        (folder / f"{split}.fna").write_text("".join(lines))
    return load_task(folder, "regression")


def test_a_bad_cache_is_reported_and_rebuilt_never_used(tmp_path):
    model, tok = perturbed_model(V2), TOKENIZERS[V2]
    task = _gc_task(tmp_path / "gc")
    config = FinetuneConfig(mode="probe", epochs=1, batch_size=4)
    cache = tmp_path / "cache"
    first = finetune(model, tok, task, config, cache=cache, progress=False, log=lambda m: None)
    files = sorted(cache.glob("*.npz"))
    assert len(files) == 3
    for damage in ("rows", "corrupt"):
        if damage == "rows":  # a cache with the wrong number of rows
            with np.load(files[0]) as saved:
                provenance = str(saved["provenance"])
                rows = saved["features"]
            np.savez(files[0], features=rows[:-1], provenance=provenance)
        else:
            files[0].write_bytes(b"PK\x03\x04 not really a zip")
        logged = []
        again = finetune(model, tok, task, config, cache=cache, progress=False, log=logged.append)
        assert any("recomputing" in m and files[0].name in m for m in logged), logged
        assert again.test == pytest.approx(first.test)
        with np.load(files[0]) as saved:  # rebuilt, atomically, whole
            assert saved["features"].shape == rows.shape if damage == "rows" else True
    assert not [p for p in cache.iterdir() if p.name.endswith(".tmp")]


def test_a_run_folder_holding_a_run_is_refused_before_any_work(tmp_path):
    model, tok = perturbed_model(V2), TOKENIZERS[V2]
    task = _gc_task(tmp_path / "gc")
    config = FinetuneConfig(mode="probe", epochs=1, batch_size=4)
    out = tmp_path / "run"
    finetune(model, tok, task, config, out=out, progress=False, log=lambda m: None)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    with pytest.raises(OutputError, match="already holds a run"):
        finetune(model, tok, task, config, out=out, progress=False, log=lambda m: None)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    finetune(model, tok, task, config, out=out, overwrite=True, progress=False, log=print)
    assert (out / "results.json").exists()


def test_a_full_fine_tune_is_checked_against_its_own_saved_model(tmp_path):
    trained = perturbed_model(V2, seed=3)  # the fine-tuned weights
    tok = TOKENIZERS[V2]
    head = SequenceHead(Head(V2.embed_dim, 3, None, key=jr.key(2)))
    info = {
        "mode": "full",
        "layer": -1,
        "head": {"kind": "sequence", "in_features": 32, "out_features": 3, "hidden": None},
        "task": {"name": "t", "kind": "classification", "classes": ["a", "b", "c"]},
    }
    save_finetuned(tmp_path, Finetuned(trained, head, -1, (0, 1, 2)), tok, info)
    other_width = perturbed_model(V2.replace(embed_dim=16, num_heads=2, ffn_dim=24))
    loaded, _ = load_finetuned(tmp_path, other_width, tok)  # the base is not used
    ids = jnp.asarray(tok.encode("ATGGCCAAATTT"))
    np.testing.assert_array_equal(loaded.model(ids).embeddings, trained(ids).embeddings)
