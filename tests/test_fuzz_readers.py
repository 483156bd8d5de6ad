"""Property: every reader of a user's file either loads it or raises the project's typed error
(`InputError`), never anything else: FASTA, variant tables, task files, tokenizer records and
adapter metadata, fed arbitrary bytes and arbitrary mutations of valid files."""

import io
import json
import tempfile
from pathlib import Path

import jax.random as jr
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import load_file, save_file

from codonnt_eqx import InputError, read_fasta, read_variants
from codonnt_eqx.finetune import (
    Finetuned,
    Head,
    SequenceHead,
    add_lora,
    load_finetuned,
    load_task,
    save_finetuned,
)
from codonnt_eqx.tokenizers import (
    BPETokenizer,
    CodonTokenizer,
    KmerTokenizer,
    OverlappingKmerTokenizer,
    tokenizer_from_record,
    tokenizer_record,
)
from helpers import TOKENIZERS, V2, perturbed_model

FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# Text built from the characters these formats are made of, so that examples get past the
# first line often enough to reach the deeper checks.
_format_text = st.text(alphabet=st.sampled_from(list(">|\t\n ;#-ACGTNacgtn0123456789.eE+xyz,")))
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@FUZZ
@given(st.binary(max_size=300) | _format_text.map(str.encode))
def test_fasta_loads_or_raises_input_error(data):
    try:
        records = read_fasta(io.BytesIO(data))
    except InputError:
        return
    assert records and all(r.name and r.sequence for r in records)


@FUZZ
@given(_format_text)
def test_variant_tables_load_or_raise_input_error(text):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "v.tsv"
        path.write_text(text, encoding="utf-8")
        try:
            variants = read_variants(path)
        except InputError:
            return
    assert all(v.position >= 1 for v in variants)


@FUZZ
@given(
    train=_format_text,
    test=_format_text,
    kind=st.sampled_from(["regression", "classification", "per-residue"]),
    fasta=st.booleans(),
)
def test_task_files_load_or_raise_input_error(train, test, kind, fasta):
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        suffix = ".fna" if fasta else ".csv"
        (folder / f"train{suffix}").write_text(train)
        (folder / f"test{suffix}").write_text(test)
        try:
            load_task(folder, kind)
        except InputError:
            pass


_VALID_RECORDS = [
    tokenizer_record(t)
    for t in (
        KmerTokenizer(3),
        CodonTokenizer(frame=2),
        OverlappingKmerTokenizer(2),
        BPETokenizer.train(["ACGTACGTAAACCCGGGTTT"] * 4, vocab_size=14),
    )
]


@st.composite
def mutated_records(draw):
    record = json.loads(json.dumps(draw(st.sampled_from(_VALID_RECORDS))))
    where = draw(st.sampled_from(["top", "config", "class", "replace"]))
    if where == "replace":
        return draw(json_values)
    target = record["config"] if where == "config" else record
    key = draw(st.sampled_from([*target, "extra"])) if where != "class" else "class"
    target[key] = draw(json_values | st.sampled_from(["this:x", "os:system", "CodonTokenizer"]))
    return record


@FUZZ
@given(mutated_records())
def test_tokenizer_records_load_or_raise_input_error(record):
    try:
        tok = tokenizer_from_record(record)
    except InputError:
        return
    assert tok.vocab_size > 0


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    folder = tmp_path_factory.mktemp("adapter")
    model, tok = perturbed_model(V2), TOKENIZERS[V2]
    head = SequenceHead(Head(V2.embed_dim, 2, None, key=jr.key(0)))
    finetuned = Finetuned(add_lora(model, rank=2, key=jr.key(1)), head, -1, (0, 1, 2))
    info = {
        "mode": "lora",
        "layer": -1,
        "head": {"kind": "sequence", "in_features": 32, "out_features": 2, "hidden": None},
        "lora": {"rank": 2, "alpha": 4.0, "targets": ["query", "value"]},
        "task": {"name": "t", "kind": "classification", "classes": ["a", "b"]},
    }
    save_finetuned(folder, finetuned, tok, info)
    file = folder / "adapter.safetensors"
    from safetensors import safe_open

    with safe_open(str(file), framework="numpy") as f:
        meta = json.loads(f.metadata()["codonnt_eqx.finetune"])
    return model, tok, load_file(str(file)), meta


@st.composite
def mutated_metadata(draw, meta):
    meta = json.loads(json.dumps(meta))
    section = draw(st.sampled_from(["top", "head", "lora", "task", "raw"]))
    if section == "raw":
        return draw(st.text(max_size=30) | json_values.map(json.dumps))
    target = meta if section == "top" else meta[section]
    key = draw(st.sampled_from([*target, "extra"]))
    if draw(st.booleans()):
        target.pop(key, None)
    else:
        target[key] = draw(json_values)
    return json.dumps(meta)


@FUZZ
@given(data=st.data())
def test_adapter_metadata_loads_or_raises_input_error(adapter, data):
    model, tok, tensors, meta = adapter
    raw = data.draw(mutated_metadata(meta))
    with tempfile.TemporaryDirectory() as d:
        save_file(
            tensors, str(Path(d) / "adapter.safetensors"), metadata={"codonnt_eqx.finetune": raw}
        )
        try:
            load_finetuned(d, model, tok)
        except InputError:
            pass
