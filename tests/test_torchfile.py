"""The torch-free reader of old-format .pth state dicts: round trip, the real weights files, and refusals.

Files are written here in torch's old layout with stand-ins for torch's globals (torch itself is not
installed), so every byte the reader sees was produced by the same records torch writes.
"""

from __future__ import annotations

import pickle
import struct
import sys
import types
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from kit.errors import KitError
from kit.models import backbones, torchfile

pytestmark = pytest.mark.bad_input


class _StorageRef:
    def __init__(self, key, array):
        self.key, self.array = key, array


class _Tensor:
    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, size, stride)


@pytest.fixture
def fake_torch(monkeypatch):
    """Modules named torch and torch._utils holding the globals a state dict pickle refers to."""
    torch, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):  # never called: only its name is pickled
        raise AssertionError("stand-in")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    for name in ("FloatStorage", "LongStorage"):
        setattr(torch, name, type(name, (), {"__module__": "torch"}))
    torch._utils = utils
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    _Tensor.__reduce__ = lambda self: (utils._rebuild_tensor_v2, (*self.args, False, OrderedDict()))
    return torch


def write_pth(path: Path, torch, tensors: dict, storages: list, tail: bytes = b"") -> Path:
    """torch's legacy layout: magic, protocol, sys info, the state dict, storage keys, raw storages."""

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, _StorageRef):
                kind = torch.LongStorage if obj.array.dtype == np.int64 else torch.FloatStorage
                return ("storage", kind, obj.key, "cpu", obj.array.size, None)
            return None

    with open(path, "wb") as handle:
        for record in (torchfile.MAGIC_NUMBER, torchfile.PROTOCOL_VERSION,
                       {"protocol_version": 1001, "little_endian": True, "type_sizes": {"int": 4, "long": 8}}):
            pickle.dump(record, handle, protocol=2)
        Pickler(handle, protocol=2).dump(OrderedDict(tensors))
        pickle.dump([s.key for s in storages], handle, protocol=2)
        for storage in storages:
            handle.write(struct.pack("<q", storage.array.size))
            handle.write(storage.array.astype(storage.array.dtype.newbyteorder("<")).tobytes())
        handle.write(tail)
    return path


@pytest.fixture
def small_pth(tmp_path, fake_torch):
    """Two tensors sharing one storage (one of them a transposed view at an offset), and an int64 counter."""
    shared = _StorageRef("0", np.arange(20, dtype=np.float32))
    counter = _StorageRef("1", np.array([7], dtype=np.int64))
    tensors = {"a.weight": _Tensor(shared, 0, (2, 3), (3, 1)),
               "a.t": _Tensor(shared, 8, (3, 2), (1, 3)),
               "bn.num_batches_tracked": _Tensor(counter, 0, (), ())}
    return write_pth(tmp_path / "small.pth", fake_torch, tensors, [shared, counter])


def test_round_trip_views_offsets_and_dtypes(small_pth):
    state = torchfile.load_state_dict(small_pth)
    assert list(state) == ["a.weight", "a.t", "bn.num_batches_tracked"]
    np.testing.assert_array_equal(state["a.weight"], [[0, 1, 2], [3, 4, 5]])
    np.testing.assert_array_equal(state["a.t"], np.arange(8, 14, dtype=np.float32).reshape(2, 3).T)
    assert state["a.t"].flags.c_contiguous and state["a.weight"].dtype == np.float32
    assert state["bn.num_batches_tracked"].dtype == np.int64 and state["bn.num_batches_tracked"] == 7


@pytest.mark.parametrize("variant", ["lite0", "lite1", "lite2"])
def test_the_installed_lite_weights_load(variant):
    path = backbones.resolve_weights(f"efficientnet_{variant}")
    state = torchfile.load_state_dict(path)
    assert len(state) == {"lite0": 296, "lite1": 386, "lite2": 386}[variant]
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3) and state["_fc.weight"].shape == (1000, 1280)
    assert all(np.isfinite(a).all() for a in state.values())
    assert 0 < state["_bn1.running_var"].min()   # real statistics, not zeros from a misread offset


def test_code_in_the_pickle_is_refused_not_run(tmp_path, fake_torch, monkeypatch):
    """The payload creates a file when unpickled naively; the reader refuses it before any call."""
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    evil = write_pth(tmp_path / "evil.pth", fake_torch, {"x": Payload()}, [])
    with open(evil, "rb") as handle:   # what torch.load without weights_only would do
        for _ in range(4):
            pickle.load(handle)
    assert marker.exists()
    marker.unlink()

    with pytest.raises(KitError) as info:
        torchfile.load_state_dict(evil)
    message = str(info.value)
    assert str(evil) in message and "refused to unpickle io.open" in message and "\n" not in message
    assert not marker.exists()


@pytest.mark.parametrize("module, name", [("os", "system"), ("builtins", "eval"), ("builtins", "getattr"),
                                          ("torch", "load"), ("collections", "deque")])
def test_globals_outside_the_allow_list_are_refused(tmp_path, module, name):
    path = tmp_path / "global.pth"
    header = b"".join(pickle.dumps(r, protocol=2) for r in (torchfile.MAGIC_NUMBER, torchfile.PROTOCOL_VERSION,
                                                            {"little_endian": True}))
    path.write_bytes(header + b"\x80\x02c" + f"{module}\n{name}\n".encode() + b")R.")
    with pytest.raises(KitError, match=f"refused to unpickle {module}.{name}"):
        torchfile.load_state_dict(path)


def test_truncated_files_are_refused_with_the_file_named(small_pth, tmp_path):
    data = small_pth.read_bytes()
    cut = tmp_path / "cut.pth"
    for length in (0, 10, 30, len(data) // 2, len(data) - 81, len(data) - 9, len(data) - 1):
        cut.write_bytes(data[:length])
        with pytest.raises(KitError) as info:
            torchfile.load_state_dict(cut)
        assert str(cut) in str(info.value) and "\n" not in str(info.value), length


def test_a_truncated_real_weights_file_is_refused(tmp_path):
    data = backbones.resolve_weights("efficientnet_lite0").read_bytes()
    cut = tmp_path / "efficientnet-lite0-57934424.pth"
    cut.write_bytes(data[: len(data) - 1000])
    with pytest.raises(KitError, match="truncated"):
        torchfile.load_state_dict(cut)
    with pytest.raises(KitError, match="sha256"):   # by its published name it fails the hash check first
        backbones.build("efficientnet_lite0", weights=cut)


@pytest.mark.parametrize("content, expected", [
    (b"PK\x03\x04" + bytes(100), "zip-format"),
    (b"<html>rate limited</html>", "not a readable PyTorch state dict"),
    (pickle.dumps(12345, protocol=2), "no PyTorch magic number"),
])
def test_other_files_are_refused(tmp_path, content, expected):
    path = tmp_path / "weights.pth"
    path.write_bytes(content)
    with pytest.raises(KitError, match=expected):
        torchfile.load_state_dict(path)


def test_a_view_past_its_storage_is_refused(tmp_path, fake_torch):
    storage = _StorageRef("0", np.zeros(4, np.float32))
    path = write_pth(tmp_path / "past.pth", fake_torch, {"w": _Tensor(storage, 2, (2, 2), (2, 1))}, [storage])
    with pytest.raises(KitError, match="past the end of its storage"):
        torchfile.load_state_dict(path)


def test_a_missing_file_is_a_kit_error(tmp_path):
    with pytest.raises(KitError, match="cannot read"):
        torchfile.load_state_dict(tmp_path / "nope.pth")
