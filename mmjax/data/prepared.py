"""A tfds dataset prepared elsewhere (array_record), opened by name and read through a field mapping.

  config.data = configs.common.folder_data(name="tfds", tfds_name="coco_captions", variant="2017",
                                           fields={"image": "image", "captions": "captions/text", "id": "image/id"})

A prepared dataset's records are renamed into a folder dataset's (mmjax.data.folder) and prepared by the same
operations: `fields` maps each mmjax field (image, captions, question, answer, question_type, label, id) to a
feature path of the dataset ("captions/text": the `text` of each of its `captions`); audio is not read from
prepared datasets yet. Images stay encoded
(tfds decoding is skipped) and are decoded in the loader's workers; labels keep the dataset's ClassLabel names.
What mmjax needs to know of the dataset besides (its train answers, question types, vocabulary, longest texts)
is computed once from the train split's text and cached beside it in `<data_dir>/mmjax_metadata/`.

Nothing is ever downloaded or written into the dataset: one that is not prepared in `data_dir` is an error that
says how to prepare it, and --regenerate_data leaves it alone.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections
import tensorflow_datasets as tfds

from mmjax import errors
from mmjax.data.folder import text_stats

FIELDS = ("image", "captions", "question", "answer", "question_type", "label", "id")


def _get(record: Mapping[str, Any], path: str) -> Any:
  value: Any = record
  for key in path.split("/"):
    value = value[key]
  return value


def _text(value: Any) -> str:
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _nested(paths: Sequence[str], leaf: Any) -> dict[str, Any]:
  """{"a/b": leaf} → {"a": {"b": leaf}}: tfds' decoders mirror the features' nesting."""
  tree: dict[str, Any] = {}
  for path in paths:
    *parents, last = path.split("/")
    node = tree
    for key in parents:
      node = node.setdefault(key, {})
    node[last] = leaf
  return tree


class MappedSource(Sequence[dict[str, Any]]):
  """The records of a tfds data source, renamed into a folder dataset's fields (see the module docstring)."""

  def __init__(self, source: Sequence[dict[str, Any]], fields: Mapping[str, str], split: str,
               label_ids: Mapping[str, int] | None, type_ids: Mapping[str, int]):
    self._source, self._fields, self._split = source, fields, split
    self._label_ids, self._type_ids = label_ids, type_ids

  def __len__(self) -> int:
    return len(self._source)

  def _map(self, record: Mapping[str, Any], index: int) -> dict[str, Any]:
    out = {name: _get(record, path) for name, path in self._fields.items()}
    if "captions" in out:
      captions = out["captions"]
      out["captions"] = [captions] if isinstance(captions, (bytes, str)) else list(captions)
    if "label" in out and self._label_ids is not None:  # A Text label: its index among the names found.
      out["label"] = self._label_ids[_text(out["label"])]
    if "question" in out:
      question_type = out.get("question_type", text_stats.DEFAULT_QUESTION_TYPE)
      out["question_type"] = (self._type_ids[_text(question_type)] if isinstance(question_type, (bytes, str))
                              else int(question_type))
    out["id"] = _text(out["id"]) if "id" in out else f"{self._split}[{index}]"
    out["source"] = out["id"]
    return out

  def __getitem__(self, index: int) -> dict[str, Any]:
    return self._map(self._source[index], index)

  def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
    return [self._map(record, index) for record, index in zip(self._source.__getitems__(list(indices)), indices)]


class PreparedDataset:
  """A prepared tfds builder seen as mmjax datasets are: `info.metadata` is mmjax's (see the module docstring)
  and `as_data_source` gives folder-dataset records. Everything else is the builder's."""

  def __init__(self, builder: tfds.core.DatasetBuilder, data_config: ml_collections.ConfigDict):
    self._builder = builder
    self._fields = dict(data_config.fields)
    self._cache_dir = os.path.join(data_config.data_dir, "mmjax_metadata")
    unknown = sorted(set(self._fields) - set(FIELDS))
    if unknown or not self._fields:
      raise errors.ConfigError(f"config.data.fields maps {unknown or 'nothing'}; it maps mmjax fields {list(FIELDS)} "
                               f"to feature paths of {builder.info.full_name}, e.g. {{'image': 'image'}}.")
    for name, path in self._fields.items():
      try:
        _get(builder.info.features, path)
      except (KeyError, TypeError):
        raise errors.ConfigError(f"config.data.fields.{name}={path!r} is not a feature of {builder.info.full_name}; "
                                 f"its features: {sorted(builder.info.features.keys())}.") from None
    self._metadata: dict[str, Any] | None = None
    self.info = _Info(builder.info, self)

  def __getattr__(self, name: str) -> Any:
    return getattr(self._builder, name)

  def _label_feature_names(self) -> list[str] | None:
    feature = _get(self._builder.info.features, self._fields["label"]) if "label" in self._fields else None
    return list(feature.names) if isinstance(feature, tfds.features.ClassLabel) else None

  def _raw_source(self, split: str) -> Sequence[dict[str, Any]]:
    skip = [path for name, path in self._fields.items() if name == "image"]
    return self._builder.as_data_source(split, decoders=_nested(skip, tfds.decode.SkipDecoding()))

  def as_data_source(self, split: str, decoders: Any = None) -> MappedSource:
    del decoders  # The image field's decoding is always skipped (the operations decode it).
    metadata = self.metadata
    names = metadata["label_names"] if "label" in self._fields and not self._label_feature_names() else None
    return MappedSource(self._raw_source(split), self._fields, split,
                        {name: i for i, name in enumerate(names)} if names is not None else None,
                        {name: i for i, name in enumerate(metadata["question_types"])})

  @property
  def metadata(self) -> dict[str, Any]:
    if self._metadata is None:
      key = hashlib.sha256(json.dumps([str(self._builder.data_dir), self._fields], sort_keys=True).encode())
      path = os.path.join(self._cache_dir, f"{self._builder.name}-{key.hexdigest()[:12]}.json")
      if os.path.exists(path):
        with open(path) as f:
          self._metadata = json.load(f)
      else:
        self._metadata = self._scan()
        os.makedirs(self._cache_dir, exist_ok=True)
        with open(path + f".tmp{os.getpid()}", "w") as f:
          json.dump(self._metadata, f)
        os.replace(path + f".tmp{os.getpid()}", path)
    return self._metadata

  def _scan(self) -> dict[str, Any]:
    """One pass over the text fields of every split (images skipped), as a folder dataset's build makes."""
    text_fields = [name for name in ("captions", "question", "answer", "question_type", "label")
                   if name in self._fields]
    stats = text_stats.TextStats()
    for split in self._builder.info.splits:
      source = self._raw_source(split)
      for start in range(0, len(source), 1024):
        for offset, record in enumerate(source.__getitems__(range(start, min(start + 1024, len(source))))):
          values = {name: _get(record, self._fields[name]) for name in text_fields}
          captions = values.get("captions", [])
          stats.add(split, f"{split}[{start + offset}]",
                    captions=[_text(c) for c in ([captions] if isinstance(captions, (bytes, str)) else captions)],
                    **{name: _text(values[name]) for name in ("question", "answer", "question_type", "label")
                       if name in values})
    return {**stats.metadata(self._label_feature_names() or ()), "sample_rate": None, "num_bad_rows": 0,
            "bad_rows": []}


class _Info:
  """A DatasetInfo whose `metadata` is mmjax's (computed by the PreparedDataset)."""

  def __init__(self, info: tfds.core.DatasetInfo, dataset: PreparedDataset):
    self._info, self._dataset = info, dataset

  def __getattr__(self, name: str) -> Any:
    return getattr(self._info, name)

  @property
  def metadata(self) -> dict[str, Any]:
    return self._dataset.metadata


def make_builder(data_config: ml_collections.ConfigDict) -> PreparedDataset:
  """The prepared dataset `config.data.tfds_name` (with `variant`, its builder config, if it has several) in
  `config.data.data_dir`."""
  name = data_config.tfds_name + (f"/{data_config.variant}" if data_config.get("variant") else "")
  try:
    builder = tfds.builder(name, data_dir=data_config.data_dir)
  except Exception as e:  # tfds raises several types for an unknown or unreadable dataset.
    raise errors.ConfigError(f"config.data.tfds_name={name!r}: no such dataset prepared in {data_config.data_dir} "
                             f"({type(e).__name__}: {str(e).splitlines()[0]}). Prepare it where it can be "
                             "downloaded (`tfds build <name> --file_format=array_record`) and copy it into the data "
                             "dir.") from None
  if not builder.is_prepared():
    raise errors.ConfigError(f"Dataset {name!r} is not prepared in {data_config.data_dir}; mmjax downloads nothing: "
                             "prepare it elsewhere with `tfds build <name> --file_format=array_record` and copy it in.")
  file_format = builder.info.file_format
  if file_format is not None and file_format != tfds.core.FileFormat.ARRAY_RECORD:
    raise errors.ConfigError(f"Dataset {name!r} in {data_config.data_dir} is stored as {file_format}; mmjax reads "
                             "array_record (random access, no TensorFlow): rebuild it with --file_format=array_record.")
  return PreparedDataset(builder, data_config)
