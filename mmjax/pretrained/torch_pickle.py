"""torch checkpoints (`torch.save` of a state_dict: .pth, .pt, .bin) read into numpy arrays without torch.

A torch checkpoint is a pickle, and unpickling runs whatever callables the pickle names: `torch.load` without
`weights_only` executes a malicious file. Here a restricted unpickler resolves only the few globals a state_dict
needs, each to a function of this module that describes a tensor (never torch's own); any other global is a
ConfigError naming the file and the global, raised before anything runs.

Both formats `torch.save` has written are read:
  zip (torch ≥ 1.6): <archive>/data.pkl, whose persistent ids name the raw storages <archive>/data/<key>;
  legacy (before 1.6, or `_use_new_zipfile_serialization=False`): consecutive pickles (magic number, protocol
    1001, system info, the object, its storage keys), then each storage as an int64 element count and raw bytes.
A tensor is a view (offset, shape, strides in elements) of its storage, which may be shared by several tensors.
"""
from __future__ import annotations

import collections
import dataclasses
import io
import pickle
import zipfile
from typing import Any, BinaryIO

import ml_dtypes
import numpy as np

from mmjax import errors

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16, "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


@dataclasses.dataclass(frozen=True)
class _StorageType:
  dtype: np.dtype


@dataclasses.dataclass(frozen=True)
class _Storage:
  key: str
  dtype: np.dtype
  numel: int


@dataclasses.dataclass(frozen=True)
class _Tensor:
  storage: _Storage
  offset: int
  shape: tuple[int, ...]
  strides: tuple[int, ...]


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None) -> _Tensor:
  del requires_grad, backward_hooks, metadata
  return _Tensor(storage, int(storage_offset), tuple(map(int, size)), tuple(map(int, stride)))


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None) -> _Tensor:
  del requires_grad, backward_hooks
  return data


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _StorageType(np.dtype(dtype)) for name, dtype in _STORAGE_DTYPES.items()},
}


class _Unpickler(pickle.Unpickler):
  """Resolves only _ALLOWED globals; records the storages the persistent ids name (in `storages`)."""

  def __init__(self, file: BinaryIO, source: str, storages: dict[str, _Storage]):
    super().__init__(file)
    self.source, self.storages = source, storages

  def find_class(self, module: str, name: str) -> Any:
    if (module, name) not in _ALLOWED:
      raise errors.ConfigError(f"{self.source} names the global {module}.{name}, which a torch state_dict does not "
                               "need; it was refused unexecuted. Load only checkpoints of plain tensors.")
    return _ALLOWED[module, name]

  def persistent_load(self, pid: Any) -> _Storage:
    # ('storage', type, key, location, numel), and a view of another storage (always None since torch 0.4)
    # after it in the legacy format.
    if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"
            and isinstance(pid[1], _StorageType) and isinstance(pid[4], int) and pid[5:] in ((), (None,))):
      raise errors.ConfigError(f"{self.source} holds a stored object {str(pid)[:80]} that is not a plain tensor "
                               "storage; load only checkpoints of plain tensors.")
    storage = _Storage(str(pid[2]), pid[1].dtype, pid[4])
    self.storages.setdefault(storage.key, storage)
    return storage


def _materialize(value: Any, buffers: dict[str, np.ndarray], source: str) -> Any:
  """`value` with every _Tensor replaced by its numpy array (a copy in native byte order)."""
  if isinstance(value, dict):
    return type(value)((k, _materialize(v, buffers, source)) for k, v in value.items())
  if isinstance(value, (list, tuple)):
    return type(value)(_materialize(v, buffers, source) for v in value)
  if not isinstance(value, _Tensor):
    return value
  data = buffers[value.storage.key]
  native = data.dtype.newbyteorder("=")
  if 0 in value.shape:
    return np.zeros(value.shape, native)
  last = value.offset + sum((n - 1) * s for n, s in zip(value.shape, value.strides))
  if value.offset < 0 or min(value.strides, default=0) < 0 or last >= data.size:
    raise errors.ConfigError(f"{source}: a tensor of shape {value.shape} reaches past its storage of "
                             f"{data.size} elements; the file is corrupt.")
  view = np.lib.stride_tricks.as_strided(data[value.offset:], value.shape,
                                         [s * data.itemsize for s in value.strides], writeable=False)
  return view.astype(native, copy=True)


def _read_storage(raw: bytes, storage: _Storage, byteorder: str) -> np.ndarray:
  """The storage's elements from its raw bytes (a ValueError if there are too few)."""
  return np.frombuffer(raw, storage.dtype.newbyteorder(byteorder), count=storage.numel)


def _load_zip(path: str) -> tuple[Any, dict[str, np.ndarray]]:
  storages: dict[str, _Storage] = {}
  with zipfile.ZipFile(path) as archive:
    names = archive.namelist()
    pickles = [name for name in names if name == "data.pkl" or name.endswith("/data.pkl")]
    if not pickles:
      raise errors.ConfigError(f"{path} is a zip archive without data.pkl, not a torch checkpoint.")
    prefix = pickles[0][:-len("data.pkl")]
    byteorder = "<"
    if f"{prefix}byteorder" in names:
      byteorder = "<" if archive.read(f"{prefix}byteorder").strip() == b"little" else ">"
    value = _Unpickler(io.BytesIO(archive.read(pickles[0])), path, storages).load()
    buffers = {key: _read_storage(archive.read(f"{prefix}data/{key}"), storage, byteorder)
               for key, storage in storages.items()}
  return value, buffers


def _load_legacy(path: str) -> tuple[Any, dict[str, np.ndarray]]:
  storages: dict[str, _Storage] = {}
  with open(path, "rb") as f:
    load = lambda: _Unpickler(f, path, storages).load()
    if load() != _LEGACY_MAGIC or load() != _LEGACY_PROTOCOL:
      raise errors.ConfigError(f"{path} is not a torch checkpoint (neither a zip archive nor torch's legacy "
                               "format); point the config at a file written by torch.save.")
    system = load()
    byteorder = "<" if not isinstance(system, dict) or system.get("little_endian", True) else ">"
    value = load()
    buffers = {}
    for key in load():
      storage = storages[key]
      count = int(np.frombuffer(f.read(8), np.dtype("int64").newbyteorder(byteorder), count=1)[0])
      if count != storage.numel:
        raise ValueError(f"storage {key} holds {count} elements, its tensors expect {storage.numel}")
      buffers[key] = _read_storage(f.read(count * storage.dtype.itemsize), storage, byteorder)
  return value, buffers


def load(path: str) -> Any:
  """The object `torch.save` wrote to `path` (typically a state_dict: {name: array}), every tensor a numpy
  array of its dtype (bfloat16 as ml_dtypes.bfloat16). A ConfigError naming the file if it needs a global a
  state_dict does not, or is not a complete torch checkpoint."""
  try:
    value, buffers = (_load_zip if zipfile.is_zipfile(path) else _load_legacy)(path)
    return _materialize(value, buffers, path)
  except errors.UserError:
    raise
  except (pickle.UnpicklingError, EOFError, ValueError, KeyError, IndexError, TypeError, AttributeError,
          zipfile.BadZipFile, OSError) as e:
    raise errors.ConfigError(f"{path} is not a complete torch checkpoint ({type(e).__name__}: {e}); it may be "
                             "truncated or corrupt: copy or reinstall it.") from None
