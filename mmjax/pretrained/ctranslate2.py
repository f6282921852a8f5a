"""CTranslate2's `model.bin`, read with numpy alone (no ctranslate2 at run time).

The format is what CTranslate2's python/ctranslate2/specs/model_spec.py `ModelSpec._serialize` writes and
src/models/model.cc `Model::load` reads, all little-endian:

  u32 binary version · string spec name · u32 spec revision · u32 variable count, then per variable:
    string name · u8 rank · u32 × rank dimensions · u8 dtype id · u32 byte count · the bytes (C order)
  u32 alias count, then per alias: string alias · string name of the variable it repeats

A string is a u16 length (counting a NUL terminator), the UTF-8 bytes and the NUL. Dtype ids follow
include/ctranslate2/types.h's DataType: float32, int8, int16, int32, float16, bfloat16. Scalars (rank 0) are the
model's attributes (e.g. an activation's enum, a flag); int8/int16 weights of a quantised model come with a
`<name>_scale` variable. Binary versions before 4 stored an item size instead of the dtype (which made float16
indistinguishable from int16): they are refused with a message to re-convert.
"""
from __future__ import annotations

import struct
from typing import NamedTuple

import ml_dtypes
import numpy as np

from mmjax import errors

DTYPES = (np.float32, np.int8, np.int16, np.int32, np.float16, ml_dtypes.bfloat16)
SUPPORTED_VERSIONS = range(4, 7)  # 6 is CTranslate2 4.x's; 4 and 5 differ only in how int8 was rounded.


class CTranslate2Model(NamedTuple):
  """A model.bin's contents: its spec (e.g. "WhisperSpec"), spec revision, binary version and variables
  {name: array}, aliases resolved (an aliased name maps to the same array as the variable it repeats)."""
  spec: str
  revision: int
  binary_version: int
  variables: dict[str, np.ndarray]


class _Reader:
  """Reads the file's fields in order; running past its end is a ConfigError naming the file and offset."""

  def __init__(self, data: bytes, path: str):
    self.data, self.path, self.offset = data, path, 0

  def take(self, size: int) -> bytes:
    if self.offset + size > len(self.data):
      raise errors.ConfigError(f"{self.path} ends at byte {len(self.data)} inside a field that needs {size} bytes "
                               f"from byte {self.offset}: it is truncated or not a CTranslate2 model.bin; "
                               "reinstall or re-convert it.")
    chunk = self.data[self.offset:self.offset + size]
    self.offset += size
    return chunk

  def unpack(self, fmt: str) -> tuple[int, ...]:
    return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))

  def string(self) -> str:
    (length,) = self.unpack("H")
    raw = self.take(length)
    if not raw or raw[-1] != 0:
      raise errors.ConfigError(f"{self.path}: the string at byte {self.offset - length} is not NUL-terminated: "
                               "not a CTranslate2 model.bin; point the importer at one.")
    return raw[:-1].decode("utf-8")


def read(path: str) -> CTranslate2Model:
  """The variables of the CTranslate2 model.bin at `path`, as numpy arrays in their stored dtype (views of one
  read of the file). A ConfigError, naming the file, for a file that is not one."""
  with open(path, "rb") as f:
    reader = _Reader(f.read(), path)
  (version,) = reader.unpack("I")
  if version not in SUPPORTED_VERSIONS:
    raise errors.ConfigError(f"{path} has CTranslate2 binary version {version}; this reader reads versions "
                             f"{SUPPORTED_VERSIONS.start}–{SUPPORTED_VERSIONS.stop - 1}. If it is a model.bin at "
                             "all, re-convert it with a current ctranslate2 converter.")
  spec = reader.string()
  revision, count = reader.unpack("II")
  variables = {}
  for _ in range(count):
    name = reader.string()
    (rank,) = reader.unpack("B")
    shape = reader.unpack("I" * rank)
    dtype_id, size = reader.unpack("BI")
    if dtype_id >= len(DTYPES):
      raise errors.ConfigError(f"{path}: variable {name!r} has dtype id {dtype_id}, which CTranslate2 does not "
                               "define; the file is corrupt.")
    dtype = np.dtype(DTYPES[dtype_id])
    if size != dtype.itemsize * int(np.prod(shape)):
      raise errors.ConfigError(f"{path}: variable {name!r} of shape {list(shape)} and dtype {dtype} stores {size} "
                               "bytes; the file is corrupt.")
    variables[name] = np.frombuffer(reader.take(size), dtype).reshape(shape)
  (aliases,) = reader.unpack("I")
  for _ in range(aliases):
    alias, target = reader.string(), reader.string()
    if target in variables:  # As model.cc, an alias of a variable that is not stored is ignored.
      variables[alias] = variables[target]
  if reader.offset != len(reader.data):
    raise errors.ConfigError(f"{path} has {len(reader.data) - reader.offset} bytes after its last field: not a "
                             "CTranslate2 model.bin, or a corrupt one.")
  return CTranslate2Model(spec, revision, version, variables)
