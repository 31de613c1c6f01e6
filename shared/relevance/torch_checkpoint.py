"""Reading a PyTorch checkpoint in torch's legacy (pre-1.6, non-zip) format with numpy alone.

The format is five pickles and the raw tensor bytes: a magic number, the protocol version, the system
info, the state dict (tensors refer to storages by key through pickle's persistent ids), the list of storage
keys, then for each key an int64 element count followed by the storage's bytes. Only plain state dicts of
tensors are accepted: the unpickler refuses every class but ``OrderedDict`` and torch's tensor rebuild
function, so a hostile file cannot run code.
"""

from __future__ import annotations

import collections
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001
STORAGE_DTYPES: dict[str, type[np.generic]] = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class CheckpointError(ValueError):
    """Not a legacy torch checkpoint of plain tensors."""


@dataclass(frozen=True)
class _TensorRef:
    storage_key: str
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


@dataclass
class _StorageRef:
    dtype: type[np.generic]
    size: int


def _rebuild_tensor_v2(storage: tuple[str, _StorageRef], offset: int, shape: tuple[int, ...],
                       stride: tuple[int, ...], *_: Any) -> _TensorRef:
    return _TensorRef(storage[0], int(offset), tuple(shape), tuple(stride))


class _StateDictUnpickler(pickle.Unpickler):
    def __init__(self, file: IO[bytes]) -> None:
        super().__init__(file)
        self.storages: dict[str, _StorageRef] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch" and name in STORAGE_DTYPES:
            return name
        raise CheckpointError(f"refusing to load {module}.{name}: only plain tensor state dicts are read")

    def persistent_load(self, pid: Any) -> tuple[str, _StorageRef]:
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage" and pid[1] in STORAGE_DTYPES):
            raise CheckpointError(f"unexpected persistent id {pid!r:.80}")
        _, kind, key, _location, size, _view = pid
        ref = self.storages.setdefault(str(key), _StorageRef(STORAGE_DTYPES[kind], int(size)))
        return str(key), ref


def _materialise(ref: _TensorRef, storage: np.ndarray) -> np.ndarray:
    itemsize = storage.itemsize
    view = np.lib.stride_tricks.as_strided(storage[ref.offset:], shape=ref.shape,
                                           strides=tuple(s * itemsize for s in ref.stride))
    return np.array(view)  # a contiguous copy: the storage buffer is not kept alive


def read_legacy_state_dict(path: Path) -> dict[str, np.ndarray]:
    """The state dict in ``path`` as ``{name: numpy array}`` (float weights and BN statistics)."""
    with path.open("rb") as file:
        try:
            magic = pickle.load(file)
            if magic != MAGIC_NUMBER:
                raise CheckpointError(f"{path.name}: not a legacy torch checkpoint (magic {magic!r:.40})")
            if pickle.load(file) != PROTOCOL_VERSION:
                raise CheckpointError(f"{path.name}: unsupported torch protocol version")
            info = pickle.load(file)
            if not info.get("little_endian", False):
                raise CheckpointError(f"{path.name}: big-endian checkpoints are not supported")
            unpickler = _StateDictUnpickler(file)
            state = unpickler.load()
            keys = pickle.load(file)
        except (pickle.UnpicklingError, EOFError, AttributeError, TypeError) as exc:
            raise CheckpointError(f"{path.name}: unreadable checkpoint ({exc})") from exc
        storages: dict[str, np.ndarray] = {}
        for key in keys:
            ref = unpickler.storages[str(key)]
            (count,) = struct.unpack("<q", file.read(8))
            data = file.read(count * np.dtype(ref.dtype).itemsize)
            if count != ref.size or len(data) != count * np.dtype(ref.dtype).itemsize:
                raise CheckpointError(f"{path.name}: storage {key} is truncated")
            storages[str(key)] = np.frombuffer(data, dtype=ref.dtype)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path.name}: the checkpoint is not a state dict")
    return {name: _materialise(ref, storages[ref.storage_key]) for name, ref in state.items()
            if isinstance(ref, _TensorRef)}
