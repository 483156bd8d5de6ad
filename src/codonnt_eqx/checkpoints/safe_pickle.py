# pyright: reportAttributeAccessIssue=false, reportArgumentType=false
# pyright: reportIncompatibleMethodOverride=false, reportCallIssue=false, reportOptionalCall=false
# (this file subclasses the pure-Python pickle._Unpickler: its private machinery, stack, read,
# dispatch, has no type stubs.)
"""Reading pickle-based weight files without executing code from them.

Both readers use unpicklers whose `find_class` knows a short list of harmless globals
(array and tensor rebuilders, dtypes, ordered dicts) and refuses everything else with
`UnsafePickleError` naming it. Neither needs torch or joblib installed.

A pickle is untrusted input beyond the globals it names: every size, stride, offset, index
and length it gives is checked against the bytes actually present before any view or buffer
is made from it, and the objects handed to it cannot be modified by it (BUILD sets
attributes).
"""

from __future__ import annotations

import bz2
import collections
import io
import lzma
import math
import os
import pickle
import struct
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


# What a malformed pickle can raise while it is read (besides CheckpointError): the
# unpicklers' own errors, and those of the allow-listed callables given wrong arguments.
_CORRUPT = (
    pickle.UnpicklingError,
    EOFError,
    ValueError,
    TypeError,
    AttributeError,
    IndexError,
    KeyError,
    OverflowError,
    struct.error,
    zipfile.BadZipFile,
    zlib.error,
    lzma.LZMAError,
    NotImplementedError,  # zipfile: an unknown compression method or version
    RuntimeError,  # zipfile: an encrypted member
    OSError,  # zipfile: a member's offset outside the file
)


class _Sealed:
    """Base of the objects `find_class` hands a pickle: immune to BUILD, which would
    otherwise set attributes on them (on a module-level object: for the rest of the process)."""

    __slots__ = ()

    def __setattr__(self, name, value):
        raise pickle.UnpicklingError(f"a pickle tried to set {name!r} on {type(self).__name__}")


class _Call(_Sealed):
    """A callable global, wrapped so that the pickle gets a fresh, sealed object."""

    __slots__ = ("_fn",)

    def __init__(self, fn):
        object.__setattr__(self, "_fn", fn)

    def __call__(self, *args):
        return self._fn(*args)


def _is_index(x) -> bool:
    return type(x) is int and x >= 0


def _is_shape(x) -> bool:
    return isinstance(x, tuple | list) and all(_is_index(n) for n in x)


class _SafeUnpickler(pickle._Unpickler):
    """The Python unpickler, made to trust no length or index from the pickle.

    The C unpickler grows its memo to whatever index LONG_BINPUT names and zeroes it: a
    13-byte pickle can make it write 30 GB. Here the memo is a dict, every read is clamped
    to the size of the stream, and BUILD (set an object's state) is refused except where
    `build` allows it.
    """

    dispatch = pickle._Unpickler.dispatch.copy()

    def __init__(self, stream, size: int, path):
        super().__init__(stream)
        self._stream, self._size, self._path = stream, size, path
        self._file_read = lambda n: stream.read(min(n, size))

    def build(self, target, state):
        """The object that `target` with `state` set becomes."""
        raise pickle.UnpicklingError(f"refusing to set the state of {type(target).__name__}")

    def _load_build(self):
        state = self.stack.pop()
        self.stack[-1] = self.build(self.stack[-1], state)

    def _load_bytearray8(self):
        # pickle makes bytearray(length), zero-filled, before reading a byte of it.
        (length,) = struct.unpack("<Q", self.read(8))
        if length > self._size:
            raise pickle.UnpicklingError(f"a bytearray of {length} bytes in a smaller file")
        buffer = bytearray(length)
        self.readinto(buffer)
        self.append(buffer)

    dispatch[pickle.BUILD[0]] = _load_build
    dispatch[pickle.BYTEARRAY8[0]] = _load_bytearray8


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
# A tensor may repeat elements of its storage (stride 0, as torch's expand() makes), which
# makes it bigger than the storage when copied; past this many elements that is refused, so
# that a few bytes of pickle cannot ask for terabytes.
MAX_REPEATED_ELEMENTS = 2**24


class _StorageType(_Sealed):
    __slots__ = ("dtype",)

    def __init__(self, dtype):
        object.__setattr__(self, "dtype", np.dtype(dtype))


class _TorchTensor(_Sealed):
    """A tensor of a torch file: a view (offset, size, stride) of a storage. Checked against
    its storage by `problem` once its name is known, copied out by `load` when needed."""

    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage, offset, size, stride, *_):  # torch's _rebuild_tensor_v2
        for name, value in zip(self.__slots__, (storage, offset, size, stride), strict=True):
            object.__setattr__(self, name, value)

    def problem(self) -> str | None:
        """What is wrong with the view, or None; nothing may be read before this says None."""
        storage, offset, size, stride = self.storage, self.offset, self.size, self.stride
        if not isinstance(storage, np.ndarray):
            return f"its storage is {type(storage).__name__}, not a storage"
        if not _is_index(offset):
            return f"storage offset {offset!r} is not a non-negative integer"
        if not _is_shape(size):
            return f"size {size!r} is not a tuple of non-negative integers"
        if not (_is_shape(stride) and len(stride) == len(size)):
            return f"stride {stride!r} is not {len(size)} non-negative integers"
        if 0 in size:
            return None  # empty: reads nothing
        last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
        if last >= len(storage):
            return (
                f"size {tuple(size)}, stride {tuple(stride)} and offset {offset} reach element "
                f"{last} of a storage of {len(storage)}"
            )
        if math.prod(size) > max(len(storage), MAX_REPEATED_ELEMENTS):
            return f"size {tuple(size)} repeats its storage of {len(storage)} elements too often"
        return None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.size)

    @property
    def dtype(self) -> np.dtype:
        return self.storage.dtype

    def load(self) -> np.ndarray:
        if 0 in self.size:
            return np.zeros(self.shape, self.dtype)
        itemsize = self.dtype.itemsize
        # A dimension of size 1 never moves along its stride, which may then be anything.
        strides = tuple(
            s * itemsize if n > 1 else 0 for n, s in zip(self.size, self.stride, strict=True)
        )
        view = np.lib.stride_tricks.as_strided(
            self.storage[self.offset :], shape=self.shape, strides=strides, writeable=False
        )
        return np.ascontiguousarray(view)


def _rebuild_parameter(data, *_):
    return data


class _TorchUnpickler(_SafeUnpickler):
    def __init__(self, file, size: int, archive: zipfile.ZipFile, prefix: str, path):
        super().__init__(file, size, path)
        self._archive, self._prefix = archive, prefix
        self._storages: dict[str, bytes] = {}

    def build(self, target, state):
        if type(target) is collections.OrderedDict:
            return target  # a state dict's `_metadata` (torch's versions): not needed here
        return super().build(target, state)

    def find_class(self, module, name):
        if module == "torch" and name in _TORCH_STORAGES:
            return _StorageType(_TORCH_STORAGES[name])
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _Call(_TorchTensor)
        if (module, name) == ("torch._utils", "_rebuild_parameter"):
            return _Call(_rebuild_parameter)
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        _refuse(self._path, module, name)

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 3 and pid[0] == "storage"):
            raise CheckpointError(f"{self._path}: unknown persistent id {pid!r}")
        storage_type, key = pid[1], pid[2]
        if not isinstance(storage_type, _StorageType):
            raise CheckpointError(f"{self._path}: unsupported storage {storage_type!r}")
        if not isinstance(key, str):
            raise CheckpointError(f"{self._path}: storage key {key!r} is not a string")
        record = f"{self._prefix}/data/{key}"
        if key not in self._storages:
            try:
                self._storages[key] = self._archive.read(record)
            except KeyError:
                raise CheckpointError(f"{self._path}: storage {key} is missing") from None
        # Bytes, not an array, are kept: torch may view one storage with several dtypes.
        raw, dtype = self._storages[key], storage_type.dtype
        if len(raw) % dtype.itemsize:
            raise CheckpointError(
                f"{self._path}: storage {record} has {len(raw)} bytes, not a whole number of "
                f"{dtype} elements"
            )
        return np.frombuffer(raw, dtype=dtype)


def load_torch_file(path: str | os.PathLike) -> dict[str, _TorchTensor]:
    """The state dict of a `pytorch_model.bin` (zip format) without torch: name -> tensor with
    `shape`, `dtype`, and `load()` for its NumPy array. Every tensor is checked against its
    storage here; a bad one is a `CheckpointError` naming it."""
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise CheckpointError(
            f"{path}: not a zip-format torch file (legacy torch.save files and corrupt files "
            "are not supported; re-save with a recent torch or use safetensors)"
        ) from None
    except _CORRUPT as e:
        raise CheckpointError(f"{path}: corrupt zip file ({e!r})") from None
    with archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pickles) != 1:
            raise CheckpointError(f"{path}: expected one data.pkl in the archive, got {pickles}")
        prefix = pickles[0].rpartition("/")[0]
        size = archive.getinfo(pickles[0]).file_size
        try:
            with archive.open(pickles[0]) as f:
                state = _TorchUnpickler(f, size, archive, prefix, path).load()
        except CheckpointError:
            raise
        except _CORRUPT as e:
            raise CheckpointError(f"{path}: corrupt torch file ({e!r})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a state dict, got {type(state).__name__}")
    for key, tensor in state.items():
        if not isinstance(key, str):
            raise CheckpointError(f"{path}: state dict key {key!r} is not a string")
        if not isinstance(tensor, _TorchTensor):
            raise CheckpointError(f"{path}: {key} is not a tensor ({type(tensor).__name__})")
        problem = tensor.problem()
        if problem:
            raise CheckpointError(f"{path}: tensor {key}: {problem}")
    return dict(state)


# -- joblib files (InstaDeep's JAX checkpoints) ---------------------------------------------------


class _NdarrayClass(_Sealed):
    """Stands for `numpy.ndarray`, which pickles name only as an argument: the class itself
    would let a pickle call `ndarray(shape)` with a shape of its choosing."""

    __slots__ = ()


def _reconstruct(subtype, shape, dtype):
    # numpy pickles every array as _reconstruct(ndarray, (0,), b"b") + BUILD(its state).
    if not isinstance(subtype, _NdarrayClass) or tuple(shape) != (0,):
        raise pickle.UnpicklingError(f"unexpected array reconstruction {shape!r}")
    return np.ndarray((0,), dtype=np.uint8)


def _dtype(spec, align=False, copy=False):
    # Always a copy: BUILD then sets the state of this object, never of a shared dtype.
    if not isinstance(spec, str):
        raise pickle.UnpicklingError(f"unexpected dtype {spec!r}")
    return np.dtype(spec, align=bool(align), copy=True)


_numpy_scalar = np.float32(0).__reduce__()[0]


def _scalar(dtype, data):
    if not (isinstance(dtype, np.dtype) and dtype.kind in "biufc" and isinstance(data, bytes)):
        raise pickle.UnpicklingError(f"unexpected scalar of dtype {dtype!r}")
    return _numpy_scalar(dtype, data)


_NUMPY_GLOBALS = {
    ("numpy", "dtype"): lambda: _Call(_dtype),
    ("numpy", "ndarray"): _NdarrayClass,
    ("collections", "OrderedDict"): lambda: collections.OrderedDict,
}
for _module in ("numpy.core.multiarray", "numpy._core.multiarray"):  # numpy 1.x and 2.x names
    _NUMPY_GLOBALS[(_module, "_reconstruct")] = lambda: _Call(_reconstruct)
    _NUMPY_GLOBALS[(_module, "scalar")] = lambda: _Call(_scalar)


def _stream_size(stream) -> int:
    if isinstance(stream, io.BytesIO):
        with stream.getbuffer() as buffer:
            return buffer.nbytes
    return os.fstat(stream.fileno()).st_size


class _ArrayWrapper(_Sealed):
    """joblib's NumpyArrayWrapper: BUILD gives its state (shape, dtype, order), and the
    array's bytes follow in the file."""

    __slots__ = ()


def _read_array(state, stream, size: int, path) -> np.ndarray:
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: an array header is a {type(state).__name__}, not a dict")
    dtype, shape, order = state.get("dtype"), state.get("shape"), state.get("order", "C")
    try:  # joblib writes a numpy dtype; np.dtype(None) would be float64
        dtype = np.dtype(dtype) if isinstance(dtype, np.dtype | str) else None
    except TypeError:
        dtype = None
    if dtype is None:
        raise CheckpointError(f"{path}: an array header has dtype {state.get('dtype')!r}")
    if dtype.hasobject:
        raise UnsafePickleError(f"{path}: object arrays are not allowed")
    if dtype.kind not in "biufc":
        raise CheckpointError(f"{path}: an array has dtype {dtype}, not a number type")
    if not _is_shape(shape):
        raise CheckpointError(f"{path}: an array has shape {shape!r}, not non-negative integers")
    if order not in ("C", "F"):
        raise CheckpointError(f"{path}: an array has order {order!r}, not 'C' or 'F'")
    if state.get("numpy_array_alignment_bytes") is not None:
        padding = stream.read(1)
        if len(padding) != 1 or len(stream.read(padding[0])) != padding[0]:
            raise CheckpointError(f"{path}: truncated file")
    shape = tuple(shape)
    nbytes = math.prod(shape) * dtype.itemsize
    left = size - stream.tell()
    if nbytes > left:  # checked before allocating: the shape is the file's word only
        raise CheckpointError(
            f"{path}: truncated file (an array of shape {shape} needs {nbytes} bytes, "
            f"{left} are left)"
        )
    array = np.empty(math.prod(shape), dtype=dtype)
    if nbytes and stream.readinto(array.data.cast("B")) != nbytes:
        raise CheckpointError(f"{path}: truncated file (an array of shape {shape} is cut)")
    if order == "F":
        return array.reshape(shape[::-1]).transpose()
    return array.reshape(shape)


def _is_plain_dtype_state(state) -> bool:
    """numpy's state of a plain number dtype: (3, byte order, no subarray, no field names,
    no fields, -1, -1, flags); anything richer goes to C code that trusts it too much
    (a hostile one made numpy raise SystemError)."""
    return (
        isinstance(state, tuple)
        and len(state) == 8
        and state[0] == 3
        and state[1] in ("<", ">", "|", "=")
        and state[2:5] == (None, None, None)
        and all(type(x) is int for x in state[5:])
    )


class _JoblibUnpickler(_SafeUnpickler):
    def find_class(self, module, name):
        if (module, name) == ("joblib.numpy_pickle", "NumpyArrayWrapper"):
            return _ArrayWrapper
        found = _NUMPY_GLOBALS.get((module, name))
        if found is None:
            _refuse(self._path, module, name)
        return found()

    def build(self, target, state):
        if isinstance(target, _ArrayWrapper):
            return _read_array(state, self._stream, self._size, self._path)
        if isinstance(target, np.dtype) and _is_plain_dtype_state(state):
            target.__setstate__(state)
            return target
        if (  # numpy's own array state: (version, shape, dtype, fortran?, raw bytes)
            isinstance(target, np.ndarray)
            and isinstance(state, tuple)
            and len(state) == 5
            and isinstance(state[2], np.dtype)
            and state[2].kind in "biufc"
            and isinstance(state[4], bytes)
        ):
            target.__setstate__(state)
            return target
        return super().build(target, state)


# Magic bytes -> decompressor; joblib's zlib compressor writes a bare zlib stream.
_DECOMPRESSORS = [
    (b"\x78", zlib.decompressobj),
    (b"\x1f\x8b", lambda: zlib.decompressobj(16 + zlib.MAX_WBITS)),
    (b"BZh", bz2.BZ2Decompressor),
    (b"\xfd7zXZ", lzma.LZMADecompressor),
    (b"]\x00\x00", lzma.LZMADecompressor),
]
# Weights barely compress (zlib cannot exceed ~1032x at all); bz2 and xz can expand a few
# kilobytes into terabytes, so output beyond this ratio is refused rather than allocated.
MAX_EXPANSION = 1000


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
    make = next((make for magic, make in _DECOMPRESSORS if raw.startswith(magic)), None)
    if make is None:
        return io.BytesIO(raw)
    limit = MAX_EXPANSION * len(raw)
    decompressor = make()
    try:
        out = decompressor.decompress(raw, max_length=limit + 1)
    except (OSError, zlib.error, lzma.LZMAError, EOFError, ValueError) as e:
        raise CheckpointError(f"{path}: corrupt compressed file ({e})") from None
    if len(out) > limit:
        raise CheckpointError(
            f"{path}: expands more than {MAX_EXPANSION}-fold when decompressed; refusing it"
        )
    if not decompressor.eof:
        raise CheckpointError(f"{path}: corrupt compressed file (truncated)")
    return io.BytesIO(out)


def load_joblib_file(path: str | os.PathLike):
    """Unpickle a joblib file (plain, or zlib/gzip/bz2/xz compressed) without joblib and
    without running code from it."""
    try:
        with _open_joblib(path) as stream:
            return _JoblibUnpickler(stream, _stream_size(stream), path).load()
    except CheckpointError:
        raise
    except OSError as e:
        raise CheckpointError(f"{path}: unreadable ({e})") from None
    except _CORRUPT as e:
        raise CheckpointError(f"{path}: corrupt or truncated pickle ({e!r})") from None
