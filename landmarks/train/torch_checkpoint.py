"""Read a legacy (pre-1.6, non-zip) PyTorch checkpoint of a state dict without torch.

A torch checkpoint is a pickle, and unpickling runs whatever callables the pickle names. This
reader never uses a plain unpickler: its ``find_class`` allows only the storage types,
``torch._utils._rebuild_tensor_v2`` and ``collections.OrderedDict``, all mapped to harmless
local stand-ins; any other global (``os.system``, ``builtins.eval``...) is refused with
:class:`UnsafeCheckpointError` before anything is called.

Layout of the file (``torch.save(..., _use_new_zipfile_serialization=False)``): a pickled magic
number, a pickled protocol version, pickled system info, the pickled object (tensors refer to
storages by persistent id), the pickled list of storage keys, then for each key an int64 element
count and the storage's raw little-endian bytes. Tensors become numpy arrays through
``as_strided`` views of their storage, bounds-checked and copied.
"""

from __future__ import annotations

import hashlib
import io
import pickle
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001
STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class CheckpointError(ValueError):
    """The file is not a readable legacy torch checkpoint (or not the one expected)."""


class UnsafeCheckpointError(CheckpointError):
    """The pickle names a callable outside the allowed set: it could run code."""


@dataclass(frozen=True)
class _StorageType:
    name: str

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(STORAGE_DTYPES[self.name]).newbyteorder("<")


@dataclass
class _Storage:
    key: str
    dtype: np.dtype
    numel: int
    data: np.ndarray | None = None


@dataclass
class _TensorRef:
    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]
    extra: dict[str, Any] = field(default_factory=dict)


def _rebuild_tensor_v2(
    storage: Any, offset: Any, size: Any, stride: Any, *_rest: Any
) -> _TensorRef:
    """Stand-in for ``torch._utils._rebuild_tensor_v2``: records where the tensor lives."""
    if not isinstance(storage, _Storage):
        raise CheckpointError("a tensor refers to something that is not a storage")
    if not (
        isinstance(offset, int)
        and isinstance(size, tuple)
        and isinstance(stride, tuple)
        and len(size) == len(stride)
        and all(isinstance(v, int) and v >= 0 for v in (offset, *size, *stride))
    ):
        raise CheckpointError("a tensor has a malformed offset, size or stride")
    return _TensorRef(storage, offset, size, stride)


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals a state dict needs; storages come by persistent id."""

    def __init__(self, stream: io.BytesIO, storages: dict[str, _Storage]) -> None:
        super().__init__(stream)
        self.storages = storages

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        raise UnsafeCheckpointError(
            f"refused to load {module}.{name}: the checkpoint's pickle names a callable outside "
            "the allowed set (torch storage types, torch._utils._rebuild_tensor_v2, "
            "collections.OrderedDict); it may run code, so nothing was loaded"
        )

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise CheckpointError(f"unknown persistent id {pid!r:.80}")
        storage_type, key, _location, numel = pid[1:5]
        if not isinstance(storage_type, _StorageType):
            raise CheckpointError(f"persistent id names a non-storage type {storage_type!r:.80}")
        if len(pid) > 5 and pid[5] is not None:
            raise CheckpointError("storage views (pre-1.0 checkpoints) are not supported")
        if not isinstance(numel, int) or numel < 0:
            raise CheckpointError(f"storage {key!r} has a bad element count")
        key = str(key)
        if key not in self.storages:
            self.storages[key] = _Storage(key, storage_type.dtype, numel)
        return self.storages[key]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _materialize(ref: _TensorRef) -> np.ndarray:
    data = ref.storage.data
    if data is None:
        raise CheckpointError(f"storage {ref.storage.key!r} has no data in the file")
    if any(s == 0 for s in ref.size):
        return np.zeros(ref.size, dtype=data.dtype)
    last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride, strict=True))
    if last >= data.size:
        raise CheckpointError(f"a tensor reaches past the end of storage {ref.storage.key!r}")
    view = np.lib.stride_tricks.as_strided(
        data[ref.offset :],
        shape=ref.size,
        strides=tuple(s * data.itemsize for s in ref.stride),
        writeable=False,
    )
    return np.array(view, dtype=data.dtype.newbyteorder("="))


def _convert(obj: Any) -> Any:
    if isinstance(obj, _TensorRef):
        return _materialize(obj)
    if isinstance(obj, dict):
        return OrderedDict((k, _convert(v)) for k, v in obj.items())
    if isinstance(obj, list | tuple):
        return type(obj)(_convert(v) for v in obj)
    return obj


def read_legacy_checkpoint(path: Path, sha256: str | None = None) -> OrderedDict[str, Any]:
    """The state dict in ``path`` as ``{name: numpy array}``, torch-free and code-free.

    Args:
        sha256: when given, the file's digest must match it (checked before unpickling).

    Raises:
        CheckpointError: wrong digest, not a legacy torch checkpoint, truncated data.
        UnsafeCheckpointError: the pickle names a callable outside the allowed set.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    if sha256 is not None:
        actual = sha256_file(path)
        if actual != sha256.lower():
            raise CheckpointError(
                f"checkpoint {path} has sha256 {actual}, expected {sha256}: refusing a file "
                "that is not the one this model was ported from"
            )
    stream = io.BytesIO(path.read_bytes())
    storages: dict[str, _Storage] = {}

    def load() -> Any:
        try:
            return _RestrictedUnpickler(stream, storages).load()
        except CheckpointError:
            raise
        except Exception as exc:  # truncated or foreign pickles fail in many ways
            raise CheckpointError(f"{path} is not a legacy torch checkpoint: {exc}") from exc

    if stream.getbuffer()[:2] == b"PK":
        raise CheckpointError(f"{path} is a zip (torch >= 1.6) checkpoint, not a legacy one")
    if load() != MAGIC_NUMBER:
        raise CheckpointError(f"{path} is not a legacy torch checkpoint (bad magic number)")
    if load() != PROTOCOL_VERSION:
        raise CheckpointError(f"{path} has an unsupported torch protocol version")
    sys_info = load()
    if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
        raise CheckpointError(f"{path} was written big-endian; only little-endian is read")
    obj = load()
    keys = load()
    if not isinstance(keys, list) or set(map(str, keys)) != set(storages):
        raise CheckpointError(f"{path}: the storage key list does not match the tensors")
    buffer = stream.getbuffer()
    pos = stream.tell()
    for key in map(str, keys):
        storage = storages[key]
        if pos + 8 > len(buffer):
            raise CheckpointError(f"{path} is truncated (storage {key!r})")
        numel = int(np.frombuffer(buffer, dtype="<i8", count=1, offset=pos)[0])
        pos += 8
        nbytes = numel * storage.dtype.itemsize
        if numel != storage.numel or pos + nbytes > len(buffer):
            raise CheckpointError(f"{path}: storage {key!r} is truncated or mis-sized")
        storage.data = np.frombuffer(buffer, dtype=storage.dtype, count=numel, offset=pos)
        pos += nbytes
    return _convert(obj)
