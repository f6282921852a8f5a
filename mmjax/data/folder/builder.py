"""A folder dataset: the user's own files and a manifest (mmjax.data.folder.manifest), built once into a tfds
array_record dataset in the data dir and opened like every other dataset.

The build is named by a hash of everything it depends on: the manifest files' bytes, each media file's size and
modification time, and the config keys that change what is stored (split_ratio, split_seed, label_names,
skip_bad_rows, store_short_side, sample_rate). Editing the manifest or replacing a photo therefore builds a new
version beside the old one (`<data_dir>/folder_dataset/<folder name>_<hash>/`), and an unchanged folder is never built
twice.

What the dataset knows of itself is computed from its rows when it is built and stored in its metadata: the
class names (config.data.label_names, else the sorted labels of every split), the answers of the train split
(the classifier VQA head's answer set), the question types, the word vocabulary of the train split's text
(the `dataset` tokenizer), the longest text of each field in words (checked against the token lengths before
anything compiles), and the rows left out with skip_bad_rows.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import ml_collections
import numpy as np
import tensorflow_datasets as tfds

from mmjax import errors
from mmjax.data.folder import manifest, media, text_stats
from mmjax.data.folder.text_stats import DEFAULT_QUESTION_TYPE, normalize_answer
from mmjax.data.generated import GeneratedBuilder



class _NoCustomConfigWarning(logging.Filter):
  """tfds warns "Using custom data configuration" whenever a builder gets a config object rather than a name,
  which every folder dataset does each time it is opened."""

  def filter(self, record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("Using custom data configuration")


logging.getLogger("absl").addFilter(_NoCustomConfigWarning())
_SHOWN_BAD_ROWS = 20  # In an error, and in the metadata of a build that skipped rows.


@dataclasses.dataclass
class FolderConfig(tfds.core.BuilderConfig):
  """Where the folder is and the options that change what its build stores; `fields` are the manifest's
  content fields (those of its first row)."""
  path: str = ""
  manifest: str = ""
  fields: tuple[str, ...] = ()
  split_ratio: str = ""
  split_seed: int = 0
  label_names: tuple[str, ...] = ()
  skip_bad_rows: bool = False
  store_short_side: int = 512
  sample_rate: int = 16_000


class FolderDataset(GeneratedBuilder, skip_registration=True):
  """tfds builder of a folder dataset (see the module docstring); built through `make_builder`."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = [FolderConfig(name="unset")]  # tfds needs one; make_builder passes the real config.

  def _info(self) -> tfds.core.DatasetInfo:
    fields = set(self.builder_config.fields)
    text = tfds.features.Text()
    features = {"id": text, "source": text}
    if "image" in fields:
      features["image"] = tfds.features.Tensor(shape=(), dtype=np.object_)  # The file's bytes.
    if "captions" in fields:
      features["captions"] = tfds.features.Sequence(text)
    if "question" in fields:
      features.update(question=text, answer=text, question_type=tfds.features.Scalar(dtype=np.int32))
    if "label" in fields:
      features["label"] = tfds.features.Scalar(dtype=np.int32)
    if "audio" in fields:
      features["audio"] = tfds.features.Tensor(shape=(None,), dtype=np.float32,
                                               encoding=tfds.features.Encoding.BYTES)
    return tfds.core.DatasetInfo(
        builder=self, description=f"The folder {self.builder_config.path}, manifest {self.builder_config.manifest}.",
        features=tfds.features.FeaturesDict(features), disable_shuffling=True,  # Manifest order.
        metadata=tfds.core.MetadataDict())

  def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Iterator]:
    del dl_manager
    config = self.builder_config
    rows, bad = manifest.read(manifest.parse_manifest_key(config.manifest), config.path)
    rows, bad_media = self._check_rows(rows)
    bad += bad_media
    if bad and not config.skip_bad_rows:
      shown = "; ".join(map(str, bad[:3])) + (f" (and {len(bad) - 3} more)" if len(bad) > 3 else "")
      raise errors.InputError(f"{len(bad)} bad manifest row(s) in {config.path}: {shown}. Fix them, or set "
                              "config.data.skip_bad_rows=True to leave them out (they are counted and reported).")
    if not rows:
      raise errors.InputError(f"Every row of the manifest in {config.path} is bad: {bad[0]}.")
    splits = manifest.assign_splits(rows, config.split_ratio, config.split_seed)
    if "train" not in splits:
      raise errors.InputError(f"The manifest in {config.path} has no train rows (its splits: {sorted(splits)}); "
                              "name one split train.")
    self.info.metadata.update(_metadata(splits, config, bad))
    return {split: self._generate_examples(split_rows) for split, split_rows in splits.items()}

  def _check_rows(self, rows: Sequence[manifest.Row]) -> tuple[list[manifest.Row], list[manifest.BadRow]]:
    """Every media file decoded once and every label checked before anything is written."""
    config = self.builder_config
    good, bad = [], []
    for row in rows:
      try:
        if "image" in row.fields:
          media.load_image(row.fields["image"], config.store_short_side)
        if "audio" in row.fields:
          media.load_audio(row.fields["audio"], config.sample_rate)
      except media.MediaError as e:
        bad.append(manifest.BadRow(row.source, str(e)))
        continue
      if config.label_names and "label" in row.fields and row.fields["label"] not in config.label_names:
        bad.append(manifest.BadRow(row.source, f"label {row.fields['label']!r} is not one of "
                                   f"config.data.label_names {list(config.label_names)}"))
        continue
      good.append(row)
    return good, bad

  def _generate_examples(self, rows: Sequence[manifest.Row]) -> Iterator[tuple[int, dict[str, Any]]]:
    config = self.builder_config
    label_ids = {name: i for i, name in enumerate(self.info.metadata["label_names"])}
    type_ids = {name: i for i, name in enumerate(self.info.metadata["question_types"])}
    for index, row in enumerate(rows):
      example: dict[str, Any] = {"id": row.id, "source": row.source}
      fields = row.fields
      if "image" in fields:
        example["image"] = media.load_image(fields["image"], config.store_short_side)
      if "captions" in fields:
        example["captions"] = list(fields["captions"])
      if "question" in fields:
        example.update(question=fields["question"], answer=normalize_answer(fields["answer"]),
                       question_type=type_ids[fields.get("question_type", DEFAULT_QUESTION_TYPE)])
      if "label" in fields:
        example["label"] = label_ids[fields["label"]]
      if "audio" in fields:
        example["audio"] = media.load_audio(fields["audio"], config.sample_rate)
      yield index, example


def _metadata(splits: Mapping[str, Sequence[manifest.Row]], config: FolderConfig,
              bad: Sequence[manifest.BadRow]) -> dict[str, Any]:
  stats = text_stats.TextStats()
  for split, rows in splits.items():
    for row in rows:
      fields = row.fields
      stats.add(split, row.source, captions=fields.get("captions", ()), question=fields.get("question"),
                answer=fields.get("answer"), question_type=fields.get("question_type"), label=fields.get("label"))
  return {**stats.metadata(config.label_names), "sample_rate": config.sample_rate if "audio" in config.fields else None,
          "num_bad_rows": len(bad), "bad_rows": [str(row) for row in bad[:_SHOWN_BAD_ROWS]]}


def _fingerprint(path: str, rows: Sequence[manifest.Row], files: Mapping[str | None, str], options: tuple) -> str:
  digest = hashlib.sha256()
  for name in files.values():
    with open(os.path.join(path, name), "rb") as f:
      digest.update(f.read())
  for row in rows:
    for field in manifest.MEDIA_FIELDS:
      if field in row.fields:
        try:
          stat = os.stat(row.fields[field])
          digest.update(f"{row.fields[field]}:{stat.st_size}:{stat.st_mtime_ns}".encode())
        except OSError:
          digest.update(f"{row.fields[field]}:missing".encode())
  digest.update(repr(options).encode())
  return digest.hexdigest()[:12]


def _build_options(data_config: ml_collections.ConfigDict) -> dict[str, Any]:
  return dict(split_ratio=data_config.split_ratio, split_seed=data_config.split_seed,
              label_names=tuple(_label_names(data_config)), skip_bad_rows=bool(data_config.skip_bad_rows),
              store_short_side=data_config.store_short_side, sample_rate=data_config.sample_rate)


def _label_names(data_config: ml_collections.ConfigDict) -> list[str]:
  return [name.strip() for name in (data_config.label_names or "").split(",") if name.strip()]


def make_builder(data_config: ml_collections.ConfigDict) -> FolderDataset:
  """The builder of `config.data` = {name: "folder", path, manifest, ...}; the manifest is read (not yet checked
  row by row) to name the build."""
  path = os.path.abspath(os.path.expanduser(data_config.path or ""))
  if not data_config.path or not os.path.isdir(path):
    raise errors.ConfigError(f"config.data.path={data_config.path!r} is not a folder; set it to the folder that "
                             "holds the manifest and the files it names.")
  config = _folder_config(path, data_config.manifest, _stamp(path, data_config.manifest),
                          tuple(sorted(_build_options(data_config).items())))
  # A new builder each time (not cached): it reads the dataset's info from disk, which another process may
  # have written since.
  return FolderDataset(config=config, data_dir=data_config.data_dir)


def _stamp(path: str, manifest_key: str) -> tuple:
  """What makes a cached builder stale: the manifest files' sizes and modification times."""
  stamp = []
  for name in manifest.parse_manifest_key(manifest_key).values():
    try:
      stat = os.stat(os.path.join(path, name))
      stamp.append((name, stat.st_size, stat.st_mtime_ns))
    except OSError:
      stamp.append((name, None, None))
  return tuple(stamp)


@functools.lru_cache(maxsize=16)
def _folder_config(path: str, manifest_key: str, stamp: tuple, options: tuple) -> FolderConfig:
  """The builder config of one folder state; cached, as a run opens its dataset many times and each would
  re-read the manifest."""
  del stamp  # Part of the cache key only.
  files = manifest.parse_manifest_key(manifest_key)
  rows, bad = manifest.read(files, path)
  fields = rows[0].fields if rows else {}
  slug = re.sub(r"[^a-z0-9]+", "_", os.path.basename(path).lower()).strip("_") or "folder"
  del bad  # Reported when the dataset is built (FolderDataset._split_generators).
  return FolderConfig(name=f"{slug}_{_fingerprint(path, rows, files, options)}", path=path, manifest=manifest_key,
                      fields=tuple(sorted(set(fields) - {"question_type"})), **dict(options))
