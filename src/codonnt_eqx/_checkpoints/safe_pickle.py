"""Reading pickle-based weight files without executing code from them.

Both readers use unpicklers whose `find_class` knows a short list of harmless globals
(array and tensor rebuilders, dtypes, ordered dicts) and refuses everything else with
`UnsafePickleError` naming it. Neither needs torch or joblib installed.
"""

from __future__ import annotations

import bz2
import collections
import gzip
import io
import lzma
import os
import pickle
import zipfile
import zlib

import ml_dtypes
import numpy as np

from ._errors import CheckpointError


class UnsafePickleError(CheckpointError):
    """A pickle asked for a global outside the allow-list; nothing from it was executed."""


def _refuse(path, module: str, name: str):
    raise UnsafePickleError(
        f"{path}: refusing to load {module}.{name} from a pickle (only arrays, tensors and "
        "plain containers are allowed; a checkpoint should contain nothing else)"
    )


_NUMPY_GLOBALS = {
    ("numpy", "dtype"): np.dtype,
    ("numpy", "ndarray"): np.ndarray,
    ("collections", "OrderedDict"): collections.OrderedDict,
}
for _module in ("numpy.core.multiarray", "numpy._core.multiarray"):  # numpy 1.x and 2.x names
    _NUMPY_GLOBALS[(_module, "_reconstruct")] = np.ndarray.__reduce__(np.zeros(0))[0]
    _NUMPY_GLOBALS[(_module, "scalar")] = np.float32(0).__reduce__()[0]


# -- PyTorch zip files (torch.save since 1.6) ----------------------------------------------------

_TORCH_STORAGES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _StorageType:
    def __init__(self, dtype):
        self.dtype = np.dtype(dtype)


def _rebuild_tensor(storage, offset, size, stride, *_):
    itemsize = storage.dtype.itemsize
    if not size:
        return storage[offset : offset + 1].reshape(()).copy()
    view = np.lib.stride_tricks.as_strided(
        storage[offset:], shape=tuple(size), strides=tuple(s * itemsize for s in stride)
    )
    return np.ascontiguousarray(view)


def _rebuild_parameter(data, *_):
    return data


class _TorchUnpickler(pickle.Unpickler):
    def __init__(self, file, archive: zipfile.ZipFile, prefix: str, path):
        super().__init__(file)
        self._archive, self._prefix, self._path = archive, prefix, path
        self._storages: dict[str, np.ndarray] = {}

    def find_class(self, module, name):
        if module == "torch" and name in _TORCH_STORAGES:
            return _StorageType(_TORCH_STORAGES[name])
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("torch._utils", "_rebuild_parameter"):
            return _rebuild_parameter
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        _refuse(self._path, module, name)

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise CheckpointError(f"{self._path}: unknown persistent id {pid!r}")
        storage_type, key = pid[1], pid[2]
        if not isinstance(storage_type, _StorageType):
            raise CheckpointError(f"{self._path}: unsupported storage {storage_type!r}")
        if key not in self._storages:
            try:
                raw = self._archive.read(f"{self._prefix}/data/{key}")
            except KeyError:
                raise CheckpointError(f"{self._path}: storage {key} is missing") from None
            self._storages[key] = np.frombuffer(raw, dtype=storage_type.dtype)
        return self._storages[key]


def load_torch_file(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The state dict of a `pytorch_model.bin` (zip format) as NumPy arrays; no torch needed."""
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise CheckpointError(
            f"{path}: not a zip-format torch file (legacy torch.save files and corrupt files "
            "are not supported; re-save with a recent torch or use safetensors)"
        ) from None
    with archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pickles) != 1:
            raise CheckpointError(f"{path}: expected one data.pkl in the archive, got {pickles}")
        prefix = pickles[0].rpartition("/")[0]
        try:
            with archive.open(pickles[0]) as f:
                state = _TorchUnpickler(f, archive, prefix, path).load()
        except CheckpointError:
            raise
        except (pickle.UnpicklingError, EOFError, ValueError, zipfile.BadZipFile, zlib.error) as e:
            raise CheckpointError(f"{path}: corrupt torch file ({e})") from e
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a state dict, got {type(state).__name__}")
    return dict(state)


# -- joblib files (InstaDeep's JAX checkpoints) ---------------------------------------------------


class _ArrayWrapper:
    """Receives the state of joblib's NumpyArrayWrapper; the array bytes follow it in the file."""

    def read(self, file, path) -> np.ndarray:
        dtype = np.dtype(self.dtype)
        if dtype.hasobject:
            raise UnsafePickleError(f"{path}: object arrays are not allowed")
        if getattr(self, "numpy_array_alignment_bytes", None) is not None:
            padding = file.read(1)
            if len(padding) != 1:
                raise CheckpointError(f"{path}: truncated file")
            file.read(padding[0])
        shape = tuple(self.shape)
        count = int(np.prod(shape, dtype=np.int64))
        array = np.empty(count, dtype=dtype)
        if file.readinto(memoryview(array).cast("B")) != array.nbytes:
            raise CheckpointError(f"{path}: truncated file (an array of shape {shape} is cut)")
        if self.order == "F":
            return array.reshape(shape[::-1]).transpose()
        return array.reshape(shape)


class _JoblibUnpickler(pickle._Unpickler):  # the Python unpickler: its BUILD can be extended
    dispatch = pickle._Unpickler.dispatch.copy()

    def __init__(self, file, path):
        super().__init__(file)
        self._file, self._path = file, path

    def find_class(self, module, name):
        if (module, name) == ("joblib.numpy_pickle", "NumpyArrayWrapper"):
            return _ArrayWrapper
        found = _NUMPY_GLOBALS.get((module, name))
        if found is None:
            _refuse(self._path, module, name)
        return found

    def _load_build(self):
        pickle._Unpickler.load_build(self)
        if isinstance(self.stack[-1], _ArrayWrapper):
            self.stack[-1] = self.stack[-1].read(self._file, self._path)

    dispatch[pickle.BUILD[0]] = _load_build


_DECOMPRESSORS = [
    (b"\x1f\x8b", gzip.decompress),
    (b"BZh", bz2.decompress),
    (b"\xfd7zXZ", lzma.decompress),
    (b"]\x00\x00", lzma.decompress),
]


def _open_joblib(path) -> io.BufferedIOBase:
    """The pickle stream of a joblib file: the file itself when uncompressed (each array is
    then read into its own buffer, freed when no longer needed), else its decompressed bytes."""
    file = open(path, "rb")
    head = file.peek(8)[:8]
    if head[:1] == b"\x80" or not head:  # a pickle (protocol >= 2)
        return file
    with file:
        raw = file.read()
    if raw.startswith(b'\x04"M\x18'):
        raise CheckpointError(f"{path}: lz4-compressed joblib files are not supported")
    try:
        if raw[:1] == b"\x78":  # joblib's zlib compressor writes a bare zlib stream
            raw = zlib.decompress(raw)
        for magic, decompress in _DECOMPRESSORS:
            if raw.startswith(magic):
                raw = decompress(raw)
    except (OSError, zlib.error, lzma.LZMAError, EOFError) as e:
        raise CheckpointError(f"{path}: corrupt compressed file ({e})") from e
    return io.BytesIO(raw)


def load_joblib_file(path: str | os.PathLike):
    """Unpickle a joblib file (plain, or zlib/gzip/bz2/xz compressed) without joblib and
    without running code from it."""
    try:
        with _open_joblib(path) as stream:
            return _JoblibUnpickler(stream, path).load()
    except CheckpointError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError) as e:
        raise CheckpointError(f"{path}: corrupt or truncated pickle ({e})") from e
