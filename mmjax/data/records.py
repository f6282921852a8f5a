"""tfds records parsed straight from their `tf.train.Example` protos, for datasets whose features are all plain.

Why: tfds' numpy deserialisation walks generic feature machinery per field of every record (about 0.3 ms for a
Shapes record on this project's 2-core machine, a third of the loader's time once batches are read together).
For features of the kinds below the result is a few lines per field, the same values and types as tfds gives
(tests/data/test_records.py compares them on every field of Shapes, AV-Digits and folder records):

- Text, a string Tensor of shape (), and an Image whose tfds decoding is skipped: the stored bytes;
- a Sequence of Text of any length: the list of the stored bytes;
- Scalar / Tensor of static shape, stored as values: `np.array(values, dtype)`, reshaped (a Python scalar for
  shape ());
- Tensor stored as raw bytes (`encoding=BYTES`): `np.frombuffer(bytes, dtype)`, reshaped.

A dataset with any other feature (sequences, decoded images, audio, ragged or dynamic shapes) keeps tfds' reader.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.core.data_sources import array_record
from tensorflow_datasets.proto import tf_example_pb2

Parser = Callable[[Any], Any]  # A tf.train.Feature → the field's value.


def _values(feature: Any) -> Any:
  return getattr(feature, feature.WhichOneof("kind")).value


def _first_bytes(feature: Any) -> bytes:
  return feature.bytes_list.value[0]


def _parser(feature: tfds.features.FeatureConnector, decoder: Any) -> Parser | None:
  """How to read one top-level feature, or None if it is not of a kind handled here."""
  if isinstance(feature, tfds.features.Text) or (isinstance(feature, tfds.features.Image)
                                                  and isinstance(decoder, tfds.decode.SkipDecoding)):
    return _first_bytes
  if (type(feature) is tfds.features.Sequence and type(feature.feature) is tfds.features.Text
      and feature._length is None and decoder is None):  # pylint: disable=protected-access
    return lambda proto: list(proto.bytes_list.value)
  if type(feature) not in (tfds.features.Tensor, tfds.features.Scalar) or decoder is not None:
    return None
  shape, dtype = tuple(feature.shape), feature.np_dtype
  encoding = feature._encoding  # pylint: disable=protected-access
  if np.dtype(dtype).kind == "O" and not shape and encoding == tfds.features.Encoding.NONE:
    return _first_bytes  # A string tensor: the stored bytes, as a Text.
  if any(dim is None for dim in shape) or np.dtype(dtype).kind == "O":
    return None
  if encoding == tfds.features.Encoding.BYTES:
    return lambda proto: np.frombuffer(_first_bytes(proto), dtype=dtype).reshape(shape)
  if encoding != tfds.features.Encoding.NONE:
    return None
  if not shape:
    return lambda proto: np.array(_values(proto), dtype=dtype).item()
  return lambda proto: np.array(_values(proto), dtype=dtype).reshape(shape)


class ParsedRecords(Sequence[dict[str, Any]]):
  """A tfds ArrayRecord data source whose records are read in one call per batch and parsed here. Its `repr` is
  the source's, which grain's loader state names."""

  def __init__(self, source: Any, parsers: Mapping[str, Parser]):
    self._source, self._parsers = source, dict(parsers)

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, key: int) -> dict[str, Any]:
    return self.__getitems__([key])[0]

  def __getitems__(self, keys: Sequence[int]) -> list[dict[str, Any]]:
    records = []  # Reading no keys is an error of array_record's reader (tfds' reader returns [] first, as here).
    for raw in self._source.data_source.__getitems__(list(keys)) if len(keys) else ():
      feature = tf_example_pb2.Example.FromString(raw).features.feature
      records.append({name: parse(feature[name]) for name, parse in self._parsers.items()})
    return records

  def __repr__(self) -> str:
    return repr(self._source)


def parsed(source: Any, features: tfds.features.FeaturesDict, decoders: Mapping[str, Any]) -> Sequence[dict]:
  """`source` (a tfds data source of `features`, decoded with `decoders`) as ParsedRecords, or unchanged when a
  feature is not plain or it is not an ArrayRecord source."""
  if not isinstance(source, array_record.ArrayRecordDataSource):
    return source
  parsers = {name: _parser(feature, decoders.get(name)) for name, feature in features.items()}
  if any(parser is None for parser in parsers.values()):
    return source
  return ParsedRecords(source, parsers)
