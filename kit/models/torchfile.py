"""Read a PyTorch state dict saved in torch's old (non-zip) serialisation, without torch.

Such a ``.pth`` file is five records one after another:
1. a pickle of the magic number,
2. a pickle of the protocol version (1001),
3. a pickle of system info (byte order, type sizes),
4. the state-dict pickle: an OrderedDict of name -> tensor, where each tensor is
   ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`` and each storage is a
   persistent id ``("storage", torch.FloatStorage, key, location, numel)``,
5. a pickle of the storage keys, in the order their bytes follow: for each, an 8-byte
   little-endian element count, then the raw little-endian elements.

A pickle can call any importable function while it loads, so unpickling a downloaded file is
running a program someone else wrote. The unpickler here resolves only the handful of globals a
state dict needs, each to a harmless stand-in defined below; any other global is refused before
anything is called, with one line naming the file.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
from collections import OrderedDict
from dataclasses import dataclass
from typing import BinaryIO, Union

import numpy as np

from kit.errors import KitError

__all__ = ["MAGIC_NUMBER", "PROTOCOL_VERSION", "load_state_dict"]

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001

# torch storage classes -> little-endian numpy dtypes (the sys-info record says little endian).
_STORAGE_DTYPES = {
    "FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2", "BFloat16Storage": "<u2",
    "LongStorage": "<i8", "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1",
    "ByteStorage": "u1", "BoolStorage": "?",
}


@dataclass(frozen=True)
class _StorageType:
    name: str

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(_STORAGE_DTYPES[self.name])


@dataclass(frozen=True)
class _Storage:
    key: str
    dtype: np.dtype
    numel: int


@dataclass(frozen=True)
class _TensorView:
    """A tensor as the pickle describes it; its bytes are only read after the pickle ends."""
    storage: _Storage
    offset: int
    size: tuple
    stride: tuple


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError("a tensor whose storage is not a persistent storage id")
    return _TensorView(storage, int(storage_offset), tuple(int(s) for s in size), tuple(int(s) for s in stride))


_ALLOWED = {("collections", "OrderedDict"): OrderedDict,
            ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
            **{("torch", name): _StorageType(name) for name in _STORAGE_DTYPES}}


class _StateDictUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise _Refused(f"{module}.{name}") from None

    def persistent_load(self, pid):
        if (not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage"
                or not isinstance(pid[1], _StorageType)):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r:.80}")
        return _Storage(str(pid[2]), pid[1].dtype, int(pid[4]))


class _Refused(pickle.UnpicklingError):
    """A global outside the allow-list: the file is not a plain state dict."""


def load_state_dict(path: Union[str, os.PathLike]) -> "OrderedDict[str, np.ndarray]":
    """Every tensor of the state dict in ``path`` as a numpy array (C order, native dtype).

    Anything that is not a plain state dict in the old format (another global in the pickle, a
    zip-format file, a truncated file, a view past its storage) is a KitError naming the file.
    """
    try:
        with open(path, "rb") as handle:
            return _read(handle)
    except KitError as exc:
        raise KitError(f"{path}: {exc}") from None
    except _Refused as exc:
        raise KitError(f"{path}: refused to unpickle {exc}: only a plain PyTorch state dict is loaded") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, struct.error) as exc:
        raise KitError(f"{path}: not a readable PyTorch state dict (old format): {exc or type(exc).__name__}") from None
    except OSError as exc:
        raise KitError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _read(handle: BinaryIO) -> "OrderedDict[str, np.ndarray]":
    if handle.read(4) == b"PK\x03\x04":
        raise KitError("a zip-format PyTorch file (torch >= 1.6 default); only the old format is read here")
    handle.seek(0)
    if _unpickle(handle) != MAGIC_NUMBER:
        raise KitError("no PyTorch magic number at the start: not a .pth file in the old format")
    if _unpickle(handle) != PROTOCOL_VERSION:
        raise KitError(f"unsupported PyTorch protocol version (expected {PROTOCOL_VERSION})")
    info = _unpickle(handle)
    if not isinstance(info, dict) or not info.get("little_endian", False):
        raise KitError("saved on a big-endian machine, which is not supported")
    tree = _unpickle(handle)
    keys = _unpickle(handle)
    if not isinstance(tree, dict) or not isinstance(keys, list):
        raise KitError("the pickle holds no state dict (a whole pickled model is not loaded)")
    views = {name: value for name, value in tree.items() if isinstance(value, _TensorView)}
    storages = {view.storage.key: view.storage for view in views.values()}
    data = _read_storages(handle, [str(k) for k in keys], storages)
    return OrderedDict((name, _materialise(name, view, data[view.storage.key])) for name, view in views.items())


def _unpickle(handle: BinaryIO):
    return _StateDictUnpickler(handle, encoding="utf-8").load()


def _read_storages(handle: BinaryIO, keys: list[str], storages: dict[str, _Storage]) -> dict[str, np.ndarray]:
    """Each storage's elements, read in the order of ``keys``, checked against the file's length."""
    remaining = _bytes_left(handle)
    out = {}
    for key in keys:
        storage = storages.get(key)
        if storage is None:
            raise KitError(f"storage {key!r} is listed but no tensor uses it")
        header = handle.read(8)
        if len(header) < 8:
            raise KitError(f"truncated: storage {key!r} is missing")
        (count,) = struct.unpack("<q", header)
        nbytes = count * storage.dtype.itemsize
        remaining -= 8
        if count != storage.numel or nbytes > remaining:
            raise KitError(f"truncated or inconsistent: storage {key!r} declares {count} elements "
                           f"({nbytes} bytes), {remaining} bytes are left")
        out[key] = np.frombuffer(handle.read(nbytes), dtype=storage.dtype, count=count)
        remaining -= nbytes
    missing = sorted(set(storages) - set(out))
    if missing:
        raise KitError(f"storage {missing[0]!r} is used by a tensor but not in the file")
    return out


def _bytes_left(handle: BinaryIO) -> int:
    here = handle.tell()
    end = handle.seek(0, io.SEEK_END)
    handle.seek(here)
    return end - here


def _materialise(name: str, view: _TensorView, storage: np.ndarray) -> np.ndarray:
    dtype = storage.dtype.newbyteorder("=")
    if len(view.size) != len(view.stride) or any(n < 0 for n in view.size + view.stride) or view.offset < 0:
        raise KitError(f"tensor {name} has a malformed shape {view.size} / stride {view.stride}")
    if 0 in view.size:
        return np.zeros(view.size, dtype)
    last = view.offset + sum((n - 1) * s for n, s in zip(view.size, view.stride))
    if last >= len(storage):
        raise KitError(f"tensor {name} reaches past the end of its storage")
    strided = np.lib.stride_tricks.as_strided(storage[view.offset:], shape=view.size,
                                              strides=[s * storage.dtype.itemsize for s in view.stride])
    return np.array(strided, dtype=dtype, order="C")
