"""Precomputed image features: a frozen image tower's output for every record of a split, stored once and then
read in place of the image.

A locked tower (LiT) computes the same features at every step and every evaluation; on a CPU, EfficientNet-Lite0
at 224×224 runs at ~45 images/s, so recomputing them would dominate every run. `config.data.image_features`
names the tower (an image encoder config block, usually with `pretrained`); mmjax.trainer.feature_cache writes
`<data_dir>/image_features/<dataset>/<key>/<split>.npy` (f32[records of the split, width], record order) before
training, and the pipeline then gives each example the row of its record as `image`. The key is a hash of the
tower's block and of the data fields that shape the image, so a change of either computes new features.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from typing import Any

import grain
import ml_collections
import numpy as np

from mmjax import errors
from mmjax.data import registry

INDEX_FIELD = "__record_index__"
# The data config fields that change the image a tower sees; other fields (text, classes) do not.
IMAGE_FIELDS = ("name", "variant", "image_size", "image_mean", "image_std", "crop_fraction", "source_dir")


def cache_dir(data_config: ml_collections.ConfigDict) -> str:
  """The folder of the features `config.data.image_features` names, for this dataset and image preprocessing."""
  block = data_config.image_features.to_dict()
  # The dataset's own folder names its build: a folder dataset's changes with its manifest and files.
  identity = {"tower": block, "data": {k: data_config.get(k) for k in IMAGE_FIELDS},
              "dataset": os.fspath(registry.dataset_builder(data_config).data_dir)}
  key = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]
  return os.path.join(data_config.data_dir, "image_features", data_config.name, key)


def cache_path(data_config: ml_collections.ConfigDict, split: str) -> str:
  return os.path.join(cache_dir(data_config), f"{split.replace('[', '_').replace(':', '-').rstrip(']')}.npy")


class IndexedSource(Sequence[dict[str, Any]]):
  """A data source whose records also carry their position (INDEX_FIELD), to find their feature row."""

  def __init__(self, source: Sequence[dict[str, Any]]):
    self._source = source

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, index: int) -> dict[str, Any]:
    return {**self._source[index], INDEX_FIELD: index}

  def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
    return [{**record, INDEX_FIELD: index} for index, record in zip(indices, self._source.__getitems__(indices))]

  def __repr__(self) -> str:
    """The wrapped source's: a loader state records its source's repr and checks it on restore, so it must not be
    object.__repr__'s memory address (which would refuse every resume in a new process)."""
    return f"IndexedSource({self._source!r})"


class SubstituteFeatures(grain.transforms.Map):
  """`image` → its record's row of the split's feature file: f32[width]."""

  def __init__(self, path: str, num_records: int):
    if not os.path.isfile(path):
      raise errors.ConfigError(f"No precomputed image features at {path}; mmjax.trainer.feature_cache computes them "
                               "(experiments.train does so before training).")
    self._path = path
    self._features = None
    rows = np.load(path, mmap_mode="r").shape[0]
    if rows != num_records:
      raise errors.InputError(f"{path} has {rows} rows but its split has {num_records} records; delete the file "
                              "so that the next run computes it again.")

  def map(self, element: dict[str, Any]) -> dict[str, Any]:
    if self._features is None:  # Opened lazily: a memmap does not pickle into the loader's worker processes.
      self._features = np.load(self._path, mmap_mode="r")
    element = dict(element)
    element["image"] = np.asarray(self._features[element.pop(INDEX_FIELD)], np.float32)
    return element

  def __getstate__(self) -> dict[str, Any]:
    return {**self.__dict__, "_features": None}
