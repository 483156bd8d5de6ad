"""Checkpoints are untrusted input: hostile or careless files end in `CheckpointError` naming
the file (never a crash, a hang, a huge allocation, another exception or a silently wrong
model), and saving is all-or-nothing."""

import bz2
import json
import lzma
import math
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
import tracemalloc
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from safetensors.numpy import load_file, save_file

from codonnt_eqx import CheckpointError, KmerTokenizer, from_pretrained, save_pretrained
from codonnt_eqx.checkpoints import hf
from codonnt_eqx.checkpoints.safe_pickle import load_joblib_file, load_torch_file
from helpers import TOKENIZERS, V1, V2, V2_RESCALED, perturbed_model, write_jax_layout


def _examples(n):
    # Examples share the test's tmp_path; each rewrites what it uses.
    return settings(max_examples=n, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _save(path, config=V2, seed=0):
    save_pretrained(perturbed_model(config, seed), TOKENIZERS[config], path)
    return path


def _leaves(model):
    return [np.asarray(x) for x in jax.tree.leaves(model) if hasattr(x, "dtype")]


def _assert_same(a, b):
    for x, y in zip(_leaves(a), _leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


_DELETE = object()  # as a value for _edit_json: remove the key


def _edit_json(file, **changes):
    data = json.loads(file.read_text())
    for key, value in changes.items():
        if value is _DELETE:
            data.pop(key, None)
        else:
            data[key] = value
    file.write_text(json.dumps(data))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """One saved checkpoint per config, copied by tests that edit it."""
    root = tmp_path_factory.mktemp("saved")
    return {config: _save(root / str(i), config) for i, config in enumerate([V2, V1])}


def _copy(saved, config, tmp_path):
    return shutil.copytree(saved[config], tmp_path / "ckpt", dirs_exist_ok=True)


# ---- torch zip files, built by hand: the pickle says what a hostile file would ----------------
#
# A torch.save file is a zip of archive/data.pkl (the state dict, whose tensors are
# torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...) calls, storages being
# persistent ids) and archive/data/<key> (each storage's raw bytes).


def _ops(obj) -> bytes:
    """The opcodes that push `obj` (protocol 2, without PROTO and STOP)."""
    return pickle.dumps(obj, protocol=2)[2:-1]


def _global(module, name) -> bytes:
    return f"c{module}\n{name}\n".encode()


_ORDERED_DICT = _global("collections", "OrderedDict") + b")R"


def _tensor_ops(offset, size, stride, storage="FloatStorage", key="0") -> bytes:
    pid = (
        b"("
        + _ops("storage")
        + _global("torch", storage)
        + _ops(key)
        + _ops("cpu")
        + _ops(0)
        + b"tQ"  # TUPLE, BINPERSID
    )
    args = pid + _ops(offset) + _ops(size) + _ops(stride) + b"\x89" + _ORDERED_DICT
    return _global("torch._utils", "_rebuild_tensor_v2") + b"(" + args + b"tR"


def _state_pickle(entries: dict[str, bytes]) -> bytes:
    items = b"".join(_ops(name) + value for name, value in entries.items())
    return b"\x80\x02" + _ORDERED_DICT + b"(" + items + b"u."  # SETITEMS, STOP


def _torch_file(path, pkl: bytes, storages: dict[str, bytes]):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pkl)
        for key, raw in storages.items():
            z.writestr(f"archive/data/{key}", raw)
        z.writestr("archive/version", "3\n")
    return path


def _storage(n):
    return (np.arange(n, dtype=np.float32) + 0.5).tobytes()


def _one_tensor(path, offset, size, stride, n=12, name="lm_head.bias"):
    pkl = _state_pickle({name: _tensor_ops(offset, size, stride)})
    return _torch_file(path, pkl, {"0": _storage(n)})


def _read(tensor):
    return tensor.load() if hasattr(tensor, "load") else np.asarray(tensor)


def test_hand_built_torch_files_read_like_torch_saves(tmp_path):
    torch = pytest.importorskip("torch")
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    views = {"t": base.t(), "cut": base[1:, ::2], "row": base[2], "scalar": base[3, 4]}
    torch.save(views, tmp_path / "real.bin")
    ours = load_torch_file(tmp_path / "real.bin")
    for name, view in views.items():
        np.testing.assert_array_equal(_read(ours[name]), view.numpy())
    # The same views spelt by hand read the same: the hand-built files below are faithful.
    spelt = {
        name: _tensor_ops(v.storage_offset(), tuple(v.shape), v.stride())
        for name, v in views.items()
    }
    _torch_file(tmp_path / "hand.bin", _state_pickle(spelt), {"0": base.numpy().tobytes()})
    by_hand = load_torch_file(tmp_path / "hand.bin")
    for name, view in views.items():
        np.testing.assert_array_equal(_read(by_hand[name]), view.numpy())


def _expected_view(n, offset, size, stride):
    """The elements a strided view reads, or None where it reaches past the storage."""
    storage = np.frombuffer(_storage(n), np.float32)
    if 0 in size:
        return np.zeros(size, np.float32)
    if offset + sum((s - 1) * t for s, t in zip(size, stride, strict=True)) >= n:
        return None
    index = np.full(size, offset)
    for axis, (s, t) in enumerate(zip(size, stride, strict=True)):
        index = index + (np.arange(s) * t).reshape(
            [-1 if a == axis else 1 for a in range(len(size))]
        )
    return storage[index]


@_examples(60)
@given(
    n=st.integers(0, 12),
    offset=st.integers(0, 8),
    dims=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 5)), max_size=3),
)
@example(n=12, offset=0, dims=[(3, 4), (4, 1)])  # in bounds: the whole storage
@example(n=12, offset=0, dims=[(4, 4), (4, 1)])  # one row too many
@example(n=4, offset=4, dims=[])  # a scalar just past the end
@example(n=0, offset=0, dims=[(0, 1)])  # empty tensor, empty storage
def test_torch_views_read_within_their_storage_or_are_refused(tmp_path, n, offset, dims):
    size, stride = tuple(d[0] for d in dims), tuple(d[1] for d in dims)
    file = _one_tensor(tmp_path / "pytorch_model.bin", offset, size, stride, n=n)
    want = _expected_view(n, offset, size, stride)
    if want is None:
        with pytest.raises(CheckpointError, match=r"pytorch_model\.bin: tensor lm_head\.bias"):
            _read(load_torch_file(file)["lm_head.bias"])
    else:
        np.testing.assert_array_equal(_read(load_torch_file(file)["lm_head.bias"]), want)


@pytest.mark.parametrize(
    "offset, size, stride, problem",
    [
        (0, (-1,), (1,), "size"),
        (0, (True,), (1,), "size"),
        (0, (2,), (1.5,), "stride"),
        (0, (2, 2), (1,), "stride"),
        (0, "ab", (1, 1), "size"),
        (-1, (1,), (1,), "offset"),
        (1.0, (1,), (1,), "offset"),
        (0, (3,), (-1,), "stride"),
    ],
)
def test_malformed_torch_views_are_refused_by_name(tmp_path, offset, size, stride, problem):
    file = _one_tensor(tmp_path / "pytorch_model.bin", offset, size, stride)
    with pytest.raises(CheckpointError, match=rf"tensor lm_head\.bias: .*{problem}"):
        _read(load_torch_file(file)["lm_head.bias"])


def test_torch_storages_and_state_dicts_are_checked(tmp_path):
    file = tmp_path / "pytorch_model.bin"
    _torch_file(file, _state_pickle({"w": _tensor_ops(0, (1,), (1,))}), {"0": b"\x00" * 7})
    with pytest.raises(CheckpointError, match=r"storage archive/data/0 has 7 bytes"):
        load_torch_file(file)
    not_a_storage = _global("torch._utils", "_rebuild_tensor_v2") + _ops((5, 0, (1,), (1,)))
    _torch_file(file, _state_pickle({"w": not_a_storage + b"R"}), {})
    with pytest.raises(CheckpointError, match="tensor w: its storage is int"):
        load_torch_file(file)
    _torch_file(file, _state_pickle({"w": _ops(3)}), {})
    with pytest.raises(CheckpointError, match="w is not a tensor"):
        load_torch_file(file)
    pkl = b"\x80\x02" + _ORDERED_DICT + _ops(7) + _tensor_ops(0, (1,), (1,)) + b"s."
    _torch_file(file, pkl, {"0": _storage(1)})
    with pytest.raises(CheckpointError, match="key 7 is not a string"):
        load_torch_file(file)


def test_torch_views_far_outside_their_storage_fail_cleanly_in_a_fresh_process(tmp_path):
    """Views that would read gigabytes past the storage or copy terabytes: run apart, so that
    a reader that follows them crashes that process and fails this test, not the run."""
    cases = {
        "huge_stride": (0, (2,), (2**40,)),
        "huge_size": (0, (2**40,), (1,)),
        "huge_offset": (2**40, (1,), (1,)),
        "overflowing_stride": (0, (2,), (2**62,)),
        "expanded_to_terabytes": (0, (2**40,), (0,)),  # stride 0 repeats one element
    }
    files = [str(_one_tensor(tmp_path / f"{k}.bin", *v)) for k, v in cases.items()]
    script = textwrap.dedent(
        """
        import sys
        from codonnt_eqx import CheckpointError
        from codonnt_eqx.checkpoints.safe_pickle import load_torch_file
        for path in sys.argv[1:]:
            try:
                for tensor in load_torch_file(path).values():
                    tensor.load() if hasattr(tensor, "load") else tensor
                print("loaded")
            except CheckpointError as e:
                print("refused" if "tensor lm_head.bias" in str(e) else f"unnamed {e}")
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", script, *files], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == ["refused"] * len(cases), run.stdout


def test_a_torch_pickle_cannot_allocate_by_naming_a_memo_index(tmp_path):
    """The C unpickler grows its memo to any index LONG_BINPUT names and zeroes it, 16 bytes
    per index: 13 bytes of pickle could make it write 60 GB."""
    pkl = b"\x80\x02N" + pickle.LONG_BINPUT + (2**26).to_bytes(4, "little") + b"."
    file = _torch_file(tmp_path / "pytorch_model.bin", pkl, {})
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match="expected a state dict"):
            load_torch_file(file)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10 * 2**20


def test_an_expanded_torch_tensor_of_modest_size_loads(tmp_path):
    """torch's expand() saves stride 0; repeating a storage a little is legitimate."""
    file = _one_tensor(tmp_path / "x.bin", 0, (1000, 12), (0, 1))
    np.testing.assert_array_equal(
        _read(load_torch_file(file)["lm_head.bias"]),
        np.broadcast_to(np.frombuffer(_storage(12), np.float32), (1000, 12)),
    )


def _mutate(data: bytes, draw) -> bytes:
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(out) - 1))
        how = draw(st.sampled_from(["replace", "insert", "delete"]))
        if how == "delete":
            del out[i]
        else:
            byte = draw(st.integers(0, 255))
            out[i : i + (how == "replace")] = bytes([byte])
    return bytes(out)


@_examples(300)
@given(data=st.data())
def test_mutated_torch_pickles_load_or_are_refused(tmp_path, data):
    pkl = _state_pickle(
        {"a": _tensor_ops(2, (2, 3), (3, 1)), "b": _tensor_ops(0, (4,), (2,), "HalfStorage", "1")}
    )
    file = _torch_file(
        tmp_path / "m.bin", _mutate(pkl, data.draw), {"0": _storage(12)} | {"1": _storage(4)}
    )
    try:
        for tensor in load_torch_file(file).values():
            _read(tensor)
    except CheckpointError:
        pass


# ---- joblib files (InstaDeep's JAX layout) ------------------------------------------------------


def _joblib_array(state: dict, raw: bytes) -> bytes:
    """A joblib array: a NumpyArrayWrapper whose BUILD state gives shape and dtype, then the
    array's bytes."""
    wrapper = _global("joblib.numpy_pickle", "NumpyArrayWrapper") + b")\x81"  # NEWOBJ
    return wrapper + _ops(state) + b"b" + raw  # BUILD


def _joblib_file(path, array_ops: bytes):
    body = b"}" + _ops("esm_transformer/~/embed") + b"}" + _ops("embeddings") + array_ops
    path.write_bytes(b"\x80\x02" + body + b"ss.")
    return path


def _header(**changes):
    return {"shape": (2, 3), "order": "C", "dtype": np.dtype("float32")} | changes


def test_hand_built_joblib_arrays_read_like_joblib_dumps(tmp_path):
    joblib = pytest.importorskip("joblib")
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    joblib.dump({"esm_transformer/~/embed": {"embeddings": array}}, tmp_path / "real.joblib")
    real = load_joblib_file(tmp_path / "real.joblib")["esm_transformer/~/embed"]["embeddings"]
    hand = _joblib_file(tmp_path / "hand.joblib", _joblib_array(_header(), array.tobytes()))
    by_hand = load_joblib_file(hand)["esm_transformer/~/embed"]["embeddings"]
    np.testing.assert_array_equal(real, array)
    np.testing.assert_array_equal(by_hand, array)


def test_empty_arrays_load(tmp_path):
    joblib = pytest.importorskip("joblib")
    joblib.dump({"m": {"b": np.zeros((0, 3), np.float32)}}, tmp_path / "a.joblib")
    assert load_joblib_file(tmp_path / "a.joblib")["m"]["b"].shape == (0, 3)
    save_file({"e": np.zeros((0, 3), np.float32)}, tmp_path / "e.safetensors")
    assert hf._read_safetensors_header(tmp_path / "e.safetensors")["e"].load().shape == (0, 3)


def test_joblib_array_bigger_than_its_file_is_refused_before_allocating(tmp_path):
    file = _joblib_file(tmp_path / "a.joblib", _joblib_array(_header(shape=(10**12,)), b"\0" * 8))
    with pytest.raises(CheckpointError, match="truncated"):
        load_joblib_file(file)
    file = _joblib_file(tmp_path / "b.joblib", _joblib_array(_header(shape=(10**8,)), b"\0" * 8))
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match="truncated"):
            load_joblib_file(file)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10 * 2**20  # the claimed array is 400 MB


@pytest.mark.parametrize(
    "state, message",
    [
        (_header(shape=(-1, 3)), "shape"),
        (_header(shape=(True, 3)), "shape"),
        (_header(shape=(2.0, 3)), "shape"),
        (_header(shape="ab"), "shape"),
        (_header(order="X"), "order"),
        (_header(dtype=None), "dtype"),
        (_header(dtype=np.dtype("U2")), "dtype"),
        ([1, 2], "not a dict"),
    ],
)
def test_malformed_joblib_array_headers_are_refused(tmp_path, state, message):
    file = _joblib_file(tmp_path / "a.joblib", _joblib_array(state, b"\0" * 24))
    with pytest.raises(CheckpointError, match=message):
        load_joblib_file(file)


def test_a_joblib_pickle_cannot_change_the_reader(tmp_path):
    """BUILD with a slot state sets attributes on whatever is on the stack, a class from
    find_class included: a file must not be able to change how later files are read."""
    from codonnt_eqx.checkpoints import safe_pickle

    wrapper = safe_pickle._ArrayWrapper
    saved_attributes = dict(vars(wrapper))
    poison = _ops((None, {"read": None, "__init__": None}))
    file = tmp_path / "poison.joblib"
    file.write_bytes(
        b"\x80\x02" + _global("joblib.numpy_pickle", "NumpyArrayWrapper") + poison + b"b."
    )
    try:
        with pytest.raises(CheckpointError):
            load_joblib_file(file)
        good = _joblib_file(tmp_path / "good.joblib", _joblib_array(_header(), b"\0" * 24))
        assert load_joblib_file(good)["esm_transformer/~/embed"]["embeddings"].shape == (2, 3)
    finally:
        for name in set(vars(wrapper)) - set(saved_attributes):
            delattr(wrapper, name)
        for name, value in saved_attributes.items():
            if name not in ("__dict__", "__weakref__") and vars(wrapper).get(name) is not value:
                setattr(wrapper, name, value)


def test_a_joblib_pickle_cannot_allocate_by_declaring_lengths(tmp_path):
    file = tmp_path / "a.joblib"
    for opcode in (pickle.BYTEARRAY8, pickle.BINBYTES8, pickle.BINUNICODE8):
        # 1 TB: beyond any machine, so a reader that believes it fails at once (MemoryError)
        file.write_bytes(b"\x80\x05" + opcode + (2**40).to_bytes(8, "little") + b"abc.")
        tracemalloc.start()
        try:
            with pytest.raises(CheckpointError):
                load_joblib_file(file)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 10 * 2**20, opcode
    # numpy's own pickled arrays: _reconstruct(ndarray, shape) would allocate that shape.
    reconstruct = _global("numpy.core.multiarray", "_reconstruct")
    args = b"(" + _global("numpy", "ndarray") + _ops((10**12,)) + _ops(b"b") + b"tR."
    file.write_bytes(b"\x80\x02" + reconstruct + args)
    with pytest.raises(CheckpointError):
        load_joblib_file(file)


@pytest.mark.parametrize("compress", [lzma.compress, bz2.compress])
def test_joblib_decompression_bombs_are_refused(tmp_path, compress):
    """A valid file of 64 MB of zeros squeezes into kilobytes; the same few kilobytes could
    as well claim terabytes."""
    zeros = _joblib_array(_header(shape=(2**24,)), bytes(2**26))
    plain = _joblib_file(tmp_path / "plain.joblib", zeros).read_bytes()
    file = tmp_path / "bomb.joblib"
    file.write_bytes(compress(plain))
    with pytest.raises(CheckpointError, match="expands more than"):
        load_joblib_file(file)


@_examples(300)
@given(data=st.data())
def test_mutated_joblib_files_load_or_are_refused(tmp_path, data):
    joblib = pytest.importorskip("joblib")
    file = tmp_path / "m.joblib"
    if not file.exists():
        joblib.dump(
            {"m/~/embed": {"embeddings": np.ones((3, 2), np.float32)}, "n": {"b": np.zeros(2)}},
            file,
        )
        (tmp_path / "good").write_bytes(file.read_bytes())
    file.write_bytes(_mutate((tmp_path / "good").read_bytes(), data.draw))
    try:
        load_joblib_file(file)
    except CheckpointError:
        pass


def _jax_folder(tmp_path, config=V2):
    pytest.importorskip("joblib")
    write_jax_layout(perturbed_model(config.replace(layer_norm_eps=1e-5)), tmp_path / "jax")
    return tmp_path / "jax"


def test_jax_layout_structure_is_checked(tmp_path):
    import joblib

    folder = _jax_folder(tmp_path)
    params_file = folder / "jax_model" / "pytree_ckpt.joblib"
    params = load_joblib_file(params_file)
    # The published and the newer name of one module: which one counts?
    twin = dict(params) | {"nucleotide_transformer/~/embed": params["esm_transformer/~/embed"]}
    joblib.dump(twin, params_file)
    with pytest.raises(CheckpointError, match="are the same parameter"):
        from_pretrained(folder)
    joblib.dump({3: {"embeddings": np.zeros(2)}}, params_file)
    with pytest.raises(CheckpointError, match="unexpected module 3"):
        from_pretrained(folder)
    joblib.dump({"esm_transformer/~/embed": {"embeddings": "text"}}, params_file)
    with pytest.raises(CheckpointError, match="not an array"):
        from_pretrained(folder)
    params_file.unlink()
    with pytest.raises(CheckpointError, match="pytree_ckpt.joblib: missing"):
        from_pretrained(folder)


_HYPER_KINDS = {
    "embed_dim": "int",
    "num_layers": "int",
    "attention_heads": "int",
    "ffn_embed_dim": "int",
    "k_for_kmers": "int",
    "key_dim": "int?",
    "max_positions": "int",
    "rescaling_factor": "number?",
    "use_glu_in_ffn": "bool",
    "add_bias_ffn": "bool",
    "emb_layer_norm_before": "bool",
    "token_dropout": "bool",
    "masking_ratio": "number",
    "masking_prob": "number",
    "embed_scale": "number",
    "add_bias_kv": "bool",
    "ffn_activation_name": "str",
    "use_rotary_embedding": "bool",
}
_REQUIRED_HYPER = {"embed_dim", "num_layers", "attention_heads", "ffn_embed_dim", "k_for_kmers"}


def _fits(kind: str, value) -> bool:
    if kind.endswith("?") and value is None:
        return True
    kind = kind.rstrip("?")
    if kind == "number":
        return type(value) in (int, float) and math.isfinite(value)
    return type(value) is {"int": int, "bool": bool, "str": str}[kind]


_JSON_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=4),
    st.sampled_from(["32", "true", "rotary", "absolute", "esm", "swish"]),
    st.lists(st.integers(0, 3), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
)


@_examples(80)
@given(key=st.sampled_from(sorted(_HYPER_KINDS)), value=st.one_of(st.just(_DELETE), _JSON_VALUES))
@example(key="embed_dim", value="32")
@example(key="use_glu_in_ffn", value="false")
@example(key="k_for_kmers", value=True)
@example(key="num_layers", value=0)
def test_any_hyperparams_json_loads_or_is_a_checkpoint_error(tmp_path, key, value):
    folder = tmp_path / "jax"
    if not folder.exists():
        _jax_folder(tmp_path)
        (tmp_path / "good.json").write_bytes((folder / "jax_model/hyperparams.json").read_bytes())
    hyper = folder / "jax_model" / "hyperparams.json"
    hyper.write_bytes((tmp_path / "good.json").read_bytes())
    _edit_json(hyper, **{key: value})
    deleted = value is _DELETE
    wrong = (deleted and key in _REQUIRED_HYPER) or (
        not deleted and not _fits(_HYPER_KINDS[key], value)
    )
    try:
        from_pretrained(folder)
    except CheckpointError as e:
        if wrong:
            assert "hyperparams.json" in str(e) and key in str(e), str(e)
    else:
        assert not wrong, f"{key}={value!r} loaded"


def test_hyperparams_json_that_is_not_an_object_is_refused(tmp_path):
    folder = _jax_folder(tmp_path)
    hyper = folder / "jax_model" / "hyperparams.json"
    for text in ["[]", "null", '"x"', "{", '{"k_for_kmers": 3, "k_for_kmers": 4}']:
        hyper.write_text(text)
        with pytest.raises(CheckpointError, match="hyperparams.json"):
            from_pretrained(folder)


def test_hostile_metadata_never_hangs_in_a_fresh_process(tmp_path, saved):
    """Claims that cost nothing to write: 10^12 layers; k = 10^9 (4^k has 600 million
    digits); a one-line vocab.txt of twelve bases (k = 12: 16.7 million tokens to build); a
    FIFO where a file should be (opening it waits for a writer). The loader must refuse
    each at once. Run apart, so that a hang is a timeout and not a stuck test run."""
    folders = []
    for name, edit in [
        ("layers", lambda f: _edit_json(f / "config.json", num_hidden_layers=10**12)),
        ("vocab", lambda f: (f / "vocab.txt").write_text("A" * 12 + "\n")),
        ("fifo", lambda f: ((f / "vocab.txt").unlink(), os.mkfifo(f / "vocab.txt"))),
    ]:
        if name == "fifo" and not hasattr(os, "mkfifo"):
            continue
        folders.append(_copy(saved, V2, tmp_path / name))
        edit(folders[-1])
    jax_folder = _jax_folder(tmp_path)
    _edit_json(jax_folder / "jax_model" / "hyperparams.json", k_for_kmers=10**9)
    folders.append(jax_folder)
    script = textwrap.dedent(
        """
        import sys
        from codonnt_eqx import CheckpointError, from_pretrained
        for path in sys.argv[1:]:
            try:
                from_pretrained(path)
                print("loaded")
            except CheckpointError:
                print("refused")
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", script, *map(str, folders)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == ["refused"] * len(folders)


# ---- config.json, vocab.txt and index files -----------------------------------------------------

_CONFIG_KINDS = {
    "model_type": "str",
    "vocab_size": "int",
    "hidden_size": "int",
    "num_hidden_layers": "int",
    "num_attention_heads": "int",
    "intermediate_size": "int",
    "max_position_embeddings": "int",
    "position_embedding_type": "str",
    "codonnt_eqx_rotary_rescaling": "number",
    "add_bias_fnn": "bool",
    "emb_layer_norm_before": "bool?",
    "token_dropout": "bool",
    "layer_norm_eps": "number",
    "pad_token_id": "int",
    "mask_token_id": "int",
    "tie_word_embeddings": "bool",
    "is_folding_model": "bool",
}
_REQUIRED_CONFIG = {k for k, v in _CONFIG_KINDS.items() if v == "int"} | {"model_type"}


@_examples(80)
@given(
    config=st.sampled_from([V2, V1]),
    key=st.sampled_from(sorted(_CONFIG_KINDS)),
    value=st.one_of(st.just(_DELETE), _JSON_VALUES),
)
@example(config=V2, key="hidden_size", value="32")
@example(config=V2, key="hidden_size", value=True)
@example(config=V1, key="emb_layer_norm_before", value="false")
@example(config=V1, key="max_position_embeddings", value=1)
def test_any_config_json_loads_or_is_a_checkpoint_error(tmp_path, saved, config, key, value):
    folder = _copy(saved, config, tmp_path)
    _edit_json(folder / "config.json", **{key: value})
    deleted = value is _DELETE
    wrong = (deleted and key in _REQUIRED_CONFIG) or (
        not deleted and not _fits(_CONFIG_KINDS[key], value)
    )
    try:
        from_pretrained(folder)
    except CheckpointError as e:
        if wrong:
            assert "config.json" in str(e) and key in str(e), str(e)
    else:
        assert not wrong, f"{key}={value!r} loaded"


@pytest.mark.parametrize(
    "text, message",
    [
        ("null", "expected a JSON object, got null"),
        ("[1, 2]", "expected a JSON object"),
        ("\xff\xfe{}", "not valid JSON"),
        ("[" * 100_000 + "]" * 100_000, "not valid JSON"),
        ("{", "not valid JSON"),
    ],
)
def test_config_json_that_is_not_an_object_is_refused(tmp_path, saved, text, message):
    folder = _copy(saved, V2, tmp_path)
    (folder / "config.json").write_bytes(text.encode("latin-1"))
    with pytest.raises(CheckpointError, match=f"config.json: {message}"):
        from_pretrained(folder)


@pytest.mark.parametrize(
    "config, changes, message",
    [
        (V1, {"position_embedding_type": "relative_key"}, "position_embedding_type"),
        (V1, {"emb_layer_norm_before": "false"}, "emb_layer_norm_before"),
        (V2, {"layer_norm_eps": float("nan")}, "layer_norm_eps"),
        (V2, {"num_attention_heads": 5}, "num_attention_heads"),  # 32 heads of 6.4
        (V1, {"max_position_embeddings": 2}, "max_position_embeddings"),
        (V2, {"is_folding_model": True}, "ESMFold"),
    ],
)
def test_config_values_that_cannot_be_right_are_named(tmp_path, saved, config, changes, message):
    folder = _copy(saved, config, tmp_path)
    _edit_json(folder / "config.json", **changes)
    with pytest.raises(CheckpointError, match=f"config.json.*{message}"):
        from_pretrained(folder)


def test_repeated_config_keys_are_refused(tmp_path, saved):
    folder = _copy(saved, V2, tmp_path)
    text = (folder / "config.json").read_text()
    (folder / "config.json").write_text(text.replace("{", '{"hidden_size": 64,', 1))
    with pytest.raises(CheckpointError, match="hidden_size.* appears twice"):
        from_pretrained(folder)


def test_vocab_txt_problems_are_checkpoint_errors(tmp_path, saved):
    folder = _copy(saved, V2, tmp_path)
    vocab = folder / "vocab.txt"
    vocab.write_text("<unk>\n<pad>\nAC\nACG\n")
    with pytest.raises(CheckpointError, match="vocab.txt: .*k-mer vocabulary"):
        from_pretrained(folder)
    vocab.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(CheckpointError, match="vocab.txt"):
        from_pretrained(folder)
    vocab.unlink()
    with pytest.raises(CheckpointError, match="vocab.txt: missing"):
        from_pretrained(folder)


@pytest.mark.parametrize(
    "config, vocabulary",
    [(V2, KmerTokenizer(3, layout="v1")), (V1, KmerTokenizer(2, layout="v2"))],
    ids=["v1-vocab-v2-weights", "v2-vocab-v1-weights"],
)
def test_a_vocabulary_of_the_other_layout_is_refused(tmp_path, saved, config, vocabulary):
    """Both layouts' vocab.txt have 4^k + 11 tokens, so counting does not tell them apart;
    the rows do (v2: 4^k + 11, v1: 4^k + 9). Accepted, every k-mer id would be off by 2."""
    folder = _copy(saved, config, tmp_path)
    vocabulary.save_vocab(folder / "vocab.txt")
    with pytest.raises(CheckpointError, match=f"vocab.txt: .*a {vocabulary.layout} vocabulary"):
        from_pretrained(folder)


def _shard(folder, files=("a.safetensors", "b.safetensors"), where=None):
    """Split folder's model.safetensors into two shards (written in `where`, default the
    folder) and an index naming them `files`."""
    tensors = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    keys = sorted(tensors)
    weight_map = {}
    for name, half in zip(files, (keys[::2], keys[1::2]), strict=True):
        save_file({k: tensors[k] for k in half}, (where or folder) / os.path.basename(name))
        weight_map |= dict.fromkeys(half, name)
    index = folder / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return index


@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlink"])
def test_index_shards_outside_the_folder_are_refused(tmp_path, saved, how):
    folder = _copy(saved, V2, tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    names = {
        "absolute": (str(outside / "a.safetensors"), "b.safetensors"),
        "dotdot": ("../outside/a.safetensors", "b.safetensors"),
        "symlink": ("a.safetensors", "b.safetensors"),
    }[how]
    _shard(folder, names)
    if how != "symlink":
        shutil.move(folder / "a.safetensors", outside / "a.safetensors")
    else:
        shutil.move(folder / "a.safetensors", outside / "a.safetensors")
        (folder / "a.safetensors").symlink_to(outside / "a.safetensors")
    with pytest.raises(CheckpointError, match="index.json: .*outside|not a file name"):
        from_pretrained(folder)


def test_index_shards_linked_into_a_hub_cache_load(tmp_path, saved):
    """The hub cache's snapshot folders link every file into ../../blobs."""
    repo = tmp_path / "models--InstaDeepAI--tiny"
    snapshot, blobs = repo / "snapshots" / "abc", repo / "blobs"
    blobs.mkdir(parents=True)
    shutil.copytree(saved[V2], snapshot)
    _shard(snapshot)
    for name in ("a.safetensors", "b.safetensors", "config.json"):
        shutil.move(snapshot / name, blobs / f"blob-{name}")
        (snapshot / name).symlink_to(f"../../blobs/blob-{name}")
    loaded, _ = from_pretrained(snapshot)
    _assert_same(loaded, perturbed_model(V2))


@pytest.mark.parametrize(
    "index, message",
    [
        ("null", "expected a JSON object"),
        ("{}", "weight_map is missing"),
        ('{"weight_map": ["a.safetensors"]}', "weight_map is missing or not"),
        ('{"weight_map": {"lm_head.bias": 3}}', "not a file name"),
        ('{"weight_map": {"lm_head.bias": ""}}', "not a file name"),
    ],
)
def test_index_json_that_is_not_a_weight_map_is_refused(tmp_path, saved, index, message):
    folder = _copy(saved, V2, tmp_path)
    _shard(folder)
    (folder / "model.safetensors.index.json").write_text(index)
    with pytest.raises(CheckpointError, match=f"index.json: .*{message}"):
        from_pretrained(folder)


def test_index_and_shards_must_agree(tmp_path, saved):
    folder = _copy(saved, V2, tmp_path)
    index = _shard(folder)
    weight_map = json.loads(index.read_text())["weight_map"]
    holder = weight_map["lm_head.bias"]
    other = "a.safetensors" if holder == "b.safetensors" else "b.safetensors"
    # A key in both shards: which copy counts?
    both = load_file(folder / other) | {"lm_head.bias": np.zeros(75, np.float32)}
    save_file(both, folder / other)
    with pytest.raises(CheckpointError, match=f"{other}: disagrees with"):
        from_pretrained(folder)
    # A key listed in the shard that does not hold it.
    folder = _copy(saved, V2, tmp_path / "2")
    index = _shard(folder)
    index.write_text(json.dumps({"weight_map": weight_map | {"lm_head.bias": other}}))
    with pytest.raises(CheckpointError, match="disagrees with model.safetensors.index.json"):
        from_pretrained(folder)


def test_a_single_weights_file_is_preferred_to_an_index_as_in_transformers(tmp_path, saved):
    """Beside a stale index, the single file is what transformers loads; so must we."""
    folder = _copy(saved, V2, tmp_path)
    save_pretrained(perturbed_model(V2, seed=7), TOKENIZERS[V2], tmp_path / "other")
    shutil.copy(tmp_path / "other" / "model.safetensors", tmp_path / "other.safetensors")
    _shard(folder)  # the index and its shards hold the seed-0 model
    save_file(load_file(tmp_path / "other.safetensors"), folder / "model.safetensors")
    loaded, _ = from_pretrained(folder)
    _assert_same(loaded, perturbed_model(V2, seed=7))


def test_oversized_metadata_is_not_read(tmp_path, saved):
    folder = _copy(saved, V2, tmp_path)
    index = _shard(folder)
    with open(index, "wb") as f:
        f.truncate(64 * 2**20 + 1)  # sparse: a huge file that takes no disk
    with pytest.raises(CheckpointError, match="index.json: larger than"):
        from_pretrained(folder)


def test_files_that_are_not_regular_files_are_refused(tmp_path, saved):
    folder = _copy(saved, V2, tmp_path)
    (folder / "model.safetensors").unlink()
    (folder / "model.safetensors").mkdir()
    with pytest.raises(CheckpointError, match="model.safetensors: not a regular file"):
        from_pretrained(folder)
    with pytest.raises(CheckpointError, match="not a folder"):
        from_pretrained(folder / "config.json")


# ---- safetensors headers ------------------------------------------------------------------------


def _safetensors(path, header, data: bytes):
    text = json.dumps(header).encode() if not isinstance(header, bytes) else header
    path.write_bytes(len(text).to_bytes(8, "little") + text + data)
    return path


def _f32(offsets, shape=(2,), dtype="F32"):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


@pytest.mark.parametrize(
    "header, size, message",
    [
        ({"a": _f32([0, 8]), "b": _f32([4, 12])}, 12, "overlaps"),
        ({"a": _f32([0, 8]), "b": _f32([12, 20])}, 20, "gap"),
        ({"a": _f32([-8, 0])}, 8, "data_offsets"),
        ({"a": _f32(["0", "8"])}, 8, "data_offsets"),
        ({"a": _f32([0, 8])}, 12, "bytes after the last tensor"),
        ({"a": _f32([0, 32], shape=(-2, -4))}, 32, "shape"),
        ({"a": _f32([0, 4], shape=(True,))}, 4, "shape"),
        ({"a": _f32([0, 8], dtype="F8_E4M3")}, 8, "F8_E4M3"),
        ({"a": "x"}, 0, "bad header entry"),
        ([1, 2], 0, "not an object"),
        (b'{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "a": {}}', 8, "twice"),
    ],
)
def test_bad_safetensors_headers_are_refused(tmp_path, header, size, message):
    file = _safetensors(tmp_path / "model.safetensors", header, bytes(size))
    with pytest.raises(CheckpointError, match=message):
        for tensor in hf._read_safetensors_header(file).values():
            tensor.load()


def test_two_names_for_one_parameter_are_refused(tmp_path, saved):
    folder = _copy(saved, V2, tmp_path)
    tensors = load_file(folder / "model.safetensors")
    gamma = tensors["esm.encoder.layer.0.LayerNorm.weight"] + 1
    save_file(
        tensors | {"esm.encoder.layer.0.LayerNorm.gamma": gamma}, folder / "model.safetensors"
    )
    with pytest.raises(CheckpointError, match=r"LayerNorm\.\w+ and .*LayerNorm\.\w+ are the same"):
        from_pretrained(folder)


def test_non_finite_weights_load_with_a_warning(tmp_path, saved):
    folder = _copy(saved, V2, tmp_path)
    tensors = load_file(folder / "model.safetensors")
    bias = tensors["lm_head.dense.bias"].copy()
    bias[3] = np.nan
    tensors["lm_head.dense.bias"] = bias
    save_file(tensors, folder / "model.safetensors")
    with pytest.warns(RuntimeWarning, match=r"NaN or infinite weights in lm_head\.dense\.bias"):
        model, _ = from_pretrained(folder)
    assert np.isnan(np.asarray(model.lm_head.dense.bias)[3])


# ---- the dtype argument -------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["int8", jnp.int32, bool, "complex64", np.dtype("f4,f4")])
def test_non_float_dtypes_are_refused_before_reading(tmp_path, dtype):
    with pytest.raises(ValueError, match="not a parameter dtype"):
        from_pretrained(tmp_path / "does-not-exist", dtype=dtype)


@pytest.mark.parametrize("dtype", ["not-a-dtype", 3])
def test_non_dtypes_are_refused_before_reading(tmp_path, dtype):
    with pytest.raises(TypeError, match="is not a dtype"):
        from_pretrained(tmp_path / "does-not-exist", dtype=dtype)


def test_float64_needs_x64(tmp_path):
    assert not jax.config.jax_enable_x64
    with pytest.raises(ValueError, match="jax_enable_x64"):
        from_pretrained(tmp_path / "does-not-exist", dtype="float64")


@pytest.mark.parametrize("dtype", ["float16", np.float16, "bfloat16", jnp.bfloat16, np.float32])
def test_float_dtypes_load(saved, dtype):
    model, _ = from_pretrained(saved[V2], dtype=dtype)
    assert {x.dtype for x in _leaves(model)} == {jnp.dtype(dtype)}


def test_misspelt_tokenizer_options_fail_before_reading(tmp_path):
    with pytest.raises(TypeError):
        from_pretrained(tmp_path / "does-not-exist", uppercse=True)


# ---- saving is all-or-nothing -------------------------------------------------------------------


def _names(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def test_saving_over_a_sharded_checkpoint_replaces_it_and_keeps_other_files(tmp_path):
    folder = _save(tmp_path / "ckpt", seed=0)
    _shard(folder)
    (folder / "pytorch_model.bin").write_bytes(b"stale")
    (folder / "README.md").write_text("mine")
    (folder / "jax_model").mkdir()
    (folder / "jax_model" / "notes.txt").write_text("also mine")
    new = perturbed_model(V2, seed=5)
    save_pretrained(new, TOKENIZERS[V2], folder)
    loaded, _ = from_pretrained(folder)
    _assert_same(loaded, new)
    assert _names(folder) == [
        "README.md",
        "config.json",
        "jax_model",
        "jax_model/notes.txt",
        "model.safetensors",
        "vocab.txt",
    ]
    assert (folder / "README.md").read_text() == "mine"


def test_stale_index_shards_outside_the_folder_are_not_touched(tmp_path):
    folder = _save(tmp_path / "ckpt")
    victim = tmp_path / "victim.safetensors"
    victim.write_bytes(b"precious")
    index = _shard(folder)
    weight_map = json.loads(index.read_text())["weight_map"]
    index.write_text(json.dumps({"weight_map": weight_map | {"x": "../victim.safetensors"}}))
    save_pretrained(perturbed_model(V2, seed=5), TOKENIZERS[V2], folder)
    assert victim.read_bytes() == b"precious"
    assert _names(folder) == ["config.json", "model.safetensors", "vocab.txt"]


def _fail_in_weights(tensors, filename, metadata=None):
    save_file(tensors, filename, metadata=metadata)
    raise OSError("disk full")


def _fail_in_vocab(self, path):
    raise OSError("disk full")


@pytest.mark.parametrize("where", ["weights", "vocab"])
def test_a_save_failing_midway_leaves_the_previous_checkpoint(tmp_path, monkeypatch, where):
    folder = _save(tmp_path / "ckpt", seed=0)
    (folder / "README.md").write_text("mine")
    before = {name: (folder / name).read_bytes() for name in _names(folder)}
    if where == "weights":
        monkeypatch.setattr(hf, "save_file", _fail_in_weights)
    else:
        monkeypatch.setattr(KmerTokenizer, "save_vocab", _fail_in_vocab)
    with pytest.raises(OSError, match="disk full"):
        save_pretrained(perturbed_model(V2, seed=5), TOKENIZERS[V2], folder)
    with pytest.raises(OSError, match="disk full"):
        save_pretrained(perturbed_model(V2, seed=5), TOKENIZERS[V2], tmp_path / "new" / "ckpt")
    monkeypatch.undo()
    assert {name: (folder / name).read_bytes() for name in _names(folder)} == before
    assert sorted(os.listdir(tmp_path)) == ["ckpt"]  # no staging folder, no "new"
    _assert_same(from_pretrained(folder)[0], perturbed_model(V2, seed=0))


@pytest.mark.parametrize("fail_from", [1, 3, 7])  # 5 old files move out, then 3 new in
def test_a_failure_while_swapping_files_puts_the_old_ones_back(tmp_path, monkeypatch, fail_from):
    folder = _save(tmp_path / "ckpt", seed=0)
    _shard(folder)
    before = {name: (folder / name).read_bytes() for name in _names(folder)}
    calls, replace = [], os.replace

    def flaky(src, dst):
        calls.append(src)
        if len(calls) == fail_from:
            raise OSError("rename failed")
        replace(src, dst)

    monkeypatch.setattr(os, "replace", flaky)
    with pytest.raises(OSError, match="rename failed"):
        save_pretrained(perturbed_model(V2, seed=5), TOKENIZERS[V2], folder)
    monkeypatch.undo()
    assert {name: (folder / name).read_bytes() for name in _names(folder)} == before


def test_a_failed_restore_says_where_the_old_files_are(tmp_path, monkeypatch):
    folder = _save(tmp_path / "ckpt")
    calls, replace = [], os.replace

    def breaks_for_good(src, dst):
        calls.append(src)
        if len(calls) >= 3:
            raise OSError("rename failed")
        replace(src, dst)

    monkeypatch.setattr(os, "replace", breaks_for_good)
    with pytest.raises(OSError, match="previous files back .*they are in .*codonnt-saving"):
        save_pretrained(perturbed_model(V2, seed=5), TOKENIZERS[V2], folder)
    monkeypatch.undo()
    (stranded,) = folder.glob(".codonnt-saving-*/old")
    assert len(list(stranded.iterdir())) == 2


def test_a_rejected_save_creates_nothing(tmp_path, saved):
    target = tmp_path / "parent" / "ckpt"
    with pytest.raises(CheckpointError, match="embed_scale"):
        save_pretrained(perturbed_model(V2_RESCALED), TOKENIZERS[V2_RESCALED], target)
    assert not (tmp_path / "parent").exists()
    # A tokenizer that does not fit would save a checkpoint that loads with shifted ids.
    with pytest.raises(CheckpointError, match="does not fit the model"):
        save_pretrained(perturbed_model(V2), KmerTokenizer(3, layout="v1"), target)
    assert not (tmp_path / "parent").exists()
    folder = _copy(saved, V2, tmp_path)
    before = {name: (folder / name).read_bytes() for name in _names(folder)}
    with pytest.raises(CheckpointError, match="embed_scale"):
        save_pretrained(perturbed_model(V2_RESCALED), TOKENIZERS[V2_RESCALED], folder)
    assert {name: (folder / name).read_bytes() for name in _names(folder)} == before


def test_saving_to_a_file_is_an_error(tmp_path):
    file = tmp_path / "ckpt"
    file.write_text("not a folder")
    with pytest.raises(NotADirectoryError, match="ckpt: exists and is not a folder"):
        save_pretrained(perturbed_model(V2), TOKENIZERS[V2], file)
    assert file.read_text() == "not a folder"
    assert _names(tmp_path) == ["ckpt"]


def test_a_new_checkpoint_folder_gets_ordinary_permissions(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    folder = _save(tmp_path / "ckpt")
    assert folder.stat().st_mode & 0o777 == 0o777 & ~umask
    _save(tmp_path / "ckpt")  # and saving again over it is fine
    assert _names(folder) == ["config.json", "model.safetensors", "vocab.txt"]
