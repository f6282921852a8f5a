"""From a `config.data` block to batches of numpy arrays.

Everything is read through tfds' ArrayRecord data source and Grain, neither of
which needs TensorFlow. Training order is a pure function of (seed, position),
so the loader's state is a few integers that a checkpoint can carry.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from absl import flags
import grain
import jax
import ml_collections
import numpy as np
import tensorflow_datasets as tfds

from mmjax import errors
from mmjax.data import batch_reader, features, integrity, loader_state, records, registry
from mmjax.data import tokenizer as tokenizer_lib
from mmjax.data.sampler import GlobalBatchSampler

# Read records in the thread (or worker) that preprocesses them. Grain's default
# (16 reader threads, 500 records ahead) re-checks every buffered record per
# record read and fights the decoder for the GIL: at batch 256 on 2 cores it
# gave ~390 examples/s against ~1,400 without reader threads.
_READ_OPTIONS = grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)


def prepare(data_config: ml_collections.ConfigDict, announce: Callable[[str], None] = logging.info,
            regenerate: bool = False) -> tfds.core.DatasetBuilder:
  """Opens the dataset, generating it into `data_dir` on first use (`announce` says so, in one line).

  tfds writes into an `incomplete.*` directory and renames it when done, so an
  interrupted generation is never mistaken for a finished one (it leaves that
  directory behind, and the next call starts afresh). Processes sharing a
  `data_dir`, such as several JAX processes on one host, take turns through a
  lock file: the first generates, the others then find the data ready.

  The first open in a process checks every file of the dataset (mmjax.data.integrity): a missing, short or
  corrupted shard is an InputError naming it, before anything compiles. With `regenerate` (the scripts'
  `--regenerate_data`) such a dataset's version folder, and nothing else of `data_dir`, is deleted and
  generated again instead; a whole one is kept.
  """
  regenerate = regenerate and registry.dataset(data_config).generated  # Never delete a dataset made elsewhere.
  with _quiet_tfds():
    builder = registry.dataset_builder(data_config)
    prepared = builder.is_prepared()
  if prepared and integrity.check(builder, regenerate=regenerate):
    return builder
  os.makedirs(data_config.data_dir, exist_ok=True)
  lock_path = os.path.join(data_config.data_dir, f".{builder.name}-{builder.builder_config.name}.lock")
  with open(lock_path, "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    with _quiet_tfds():
      builder = registry.dataset_builder(data_config)
      # Checked again under the lock: another process may have regenerated it meanwhile.
      problem = regenerate and builder.is_prepared() and integrity.find_problem(builder)
      if problem:
        announce(f"Dataset file {problem}: deleting {builder.data_dir} and generating it again.")
        shutil.rmtree(builder.data_dir)
        builder = registry.dataset_builder(data_config)
      if not builder.is_prepared():
        start = time.time()
        announce(f"Generating the {builder.info.full_name} dataset into {data_config.data_dir} (first use; nothing "
                 "is downloaded)...")
        # ArrayRecord is random-access and TF-free; parquet drops rows in tfds 4.9.10.
        builder.download_and_prepare(file_format="array_record",
                                     download_config=registry.dataset(data_config).download_config(data_config))
        announce(f"Generated {builder.info.full_name} in {time.time() - start:.0f} s.")
  return builder


_quiet_lock = threading.Lock()
_quiet_users = 0
_absl_level = logging.NOTSET


@contextlib.contextmanager
def _quiet_tfds() -> Iterator[None]:
  """While a dataset is opened or generated, tfds warns that the folder it is about to write has no
  dataset_info.json yet and draws nested progress bars: its INFO and WARNING logs (through absl's logger) and
  its bars are held back; errors still show. Both settings are global, so threads that generate at once share
  one quiet period (the first to enter starts it, the last to leave ends it)."""
  global _quiet_users, _absl_level
  absl_logger = logging.getLogger("absl")
  with _quiet_lock:
    if not _quiet_users:
      _absl_level = absl_logger.level
      absl_logger.setLevel(logging.ERROR)
      tfds.disable_progress_bar()
    _quiet_users += 1
  try:
    yield
  finally:
    with _quiet_lock:
      _quiet_users -= 1
      if not _quiet_users:
        absl_logger.setLevel(_absl_level)
        tfds.enable_progress_bar()


def get_tokenizer(data_config: ml_collections.ConfigDict) -> tokenizer_lib.Tokenizer:
  """The tokenizer `config.data.tokenizer` names, or else the one over the vocabulary stored with the dataset."""
  return registry.tokenizer(prepare(data_config), data_config)


def train_split(data_config: ml_collections.ConfigDict) -> str:
  """The split training reads: `config.data.train_split` (a tfds split or slice, e.g. "train[:14000]"), default
  "train"."""
  return data_config.get("train_split") or "train"


def _operations(builder: tfds.core.DatasetBuilder, data_config: ml_collections.ConfigDict, train: bool,
                split: str) -> list:
  """The per-example operations of `split`: with `config.data.image_features`, first the image swapped for its
  precomputed features (mmjax.data.features), then the dataset's own."""
  dataset = registry.dataset(data_config)
  operations = dataset.operations(builder, registry.tokenizer(builder, data_config), data_config, train)
  if data_config.get("image_features"):
    if not dataset.precomputed_images:
      raise errors.ConfigError(f"config.data.image_features: dataset {data_config.name!r} cannot take precomputed "
                               "image features; leave it empty.")
    count = _check_split(builder, split)
    operations.insert(0, features.SubstituteFeatures(features.cache_path(data_config, split), count))
  return operations


def label_names(data_config: ml_collections.ConfigDict) -> dict[str, list[str]]:
  """Names of the ids of each integer label field, keyed by the batch field: e.g. Shapes'
  {"answer_id": ["no", "yes", ...], "question_type": [...], "shape": [...], "colour": [...], "size": [...]}.
  A classifier over a field has len(label_names[field]) classes."""
  return registry.dataset(data_config).label_names(prepare(data_config).info.metadata)


def photo_input(data_config: ml_collections.ConfigDict) -> Callable[[np.ndarray], np.ndarray]:
  """photo (uint8 [H, W, 3] RGB, any size; see mmjax.data.photos.decode) → the `image` input the dataset's models
  take at evaluation (e.g. resized, centre-cropped and normalised), for inference on image files."""
  dataset = registry.dataset(data_config)
  if dataset.photo_input is None:
    raise errors.ConfigError(f"Dataset {data_config.name!r} has no photo input: its models cannot be given image "
                             "files.")
  return dataset.photo_input(prepare(data_config), data_config)


def sample_rate(data_config: ml_collections.ConfigDict) -> int | None:
  """The sample rate (Hz) of the dataset's audio, or None if it has none."""
  return prepare(data_config).info.metadata.get("sample_rate")


def element_spec(data_config: ml_collections.ConfigDict) -> dict[str, jax.ShapeDtypeStruct]:
  """Shape and dtype of every numeric field of one training example (no batch dimension), to shape a
  model's parameters without opening a training loader: the training preprocessing of one record of the
  first split (a held-out one where there is one)."""
  builder = prepare(data_config)
  splits = sorted(builder.info.splits, key=lambda name: name == "train")
  split = train_split(data_config) if data_config.get("image_features") else splits[0]
  source = _data_source(builder, split, data_config)
  example = source[0]
  for operation in _operations(builder, data_config, True, split):
    if isinstance(operation, grain.transforms.RandomMap):
      example = operation.random_map(example, np.random.default_rng(0))
    else:
      example = operation.map(example)
  return {key: jax.ShapeDtypeStruct(np.shape(value), np.asarray(value).dtype) for key, value in example.items()
          if np.asarray(value).dtype.kind in "biuf"}


def _check_split(builder: tfds.core.DatasetBuilder, split: str) -> int:
  """Number of examples in `split` (a name, or a tfds slice like "test[:256]")."""
  available = sorted(builder.info.splits)
  if split.partition("[")[0] not in available:
    raise errors.ConfigError(f"Unknown split {split!r} of {builder.info.full_name}; available splits: {available}.")
  count = builder.info.splits[split].num_examples
  if not count:
    raise errors.InputError(f"Split {split!r} of {builder.info.full_name} has no examples.")
  return count


def num_examples(data_config: ml_collections.ConfigDict, split: str) -> int:
  """Number of examples in `split` over all processes."""
  return _check_split(prepare(data_config), split)


def _data_source(builder: tfds.core.DatasetBuilder, split: str,
                 data_config: ml_collections.ConfigDict) -> Sequence[dict[str, Any]]:
  """The records of `split`, only those of `config.data.classes` if it names some (see registry.class_subset)."""
  _check_split(builder, split)
  # E.g. Shapes' images stay PNG bytes here: its PreprocessExample decodes them in the loader's workers.
  decoders = dict(registry.dataset(data_config).decoders)
  source = records.parsed(builder.as_data_source(split, decoders=decoders), builder.info.features, decoders)
  if data_config.get("image_features"):
    source = features.IndexedSource(source)
  return registry.class_subset(source, builder, data_config, split)


def field_values(data_config: ml_collections.ConfigDict, split: str,
                 fields: Sequence[str]) -> dict[str, list[Any]]:
  """The stored values of non-image `fields` for every example of `split` (Text as str),
  read without decoding images, e.g. the train answers a majority baseline is computed from."""
  source = _data_source(prepare(data_config), split, data_config)
  values = {field: [] for field in fields}
  for start in range(0, len(source), 1024):
    for record in source.__getitems__(range(start, min(start + 1024, len(source)))):
      for field in fields:
        value = record[field]
        values[field].append(value.decode("utf-8") if isinstance(value, bytes) else value)
  return values


class _GrainIterator:
  """grain's DataLoader iterator (used with workers), its state as a dict like BatchReader's."""

  def __init__(self, data_loader: grain.DataLoader):
    self._iterator = iter(data_loader)

  def __next__(self) -> dict[str, np.ndarray]:
    return next(self._iterator)

  def get_state(self) -> dict[str, Any]:
    return json.loads(self._iterator.get_state())

  def set_state(self, state: dict[str, Any]) -> None:
    self._iterator.set_state(json.dumps(state).encode())


class TrainLoader(Iterator[dict[str, np.ndarray]]):
  """An endless iterator of training batches whose position can be saved and restored.

  The state is a small JSON-serialisable dict; restoring it in a new loader
  built from the same config, seed and global batch size continues with exactly the
  batch the saved loader would have produced next, whatever the process counts.
  """

  def __init__(self, iterator: batch_reader.BatchReader | _GrainIterator, sampler: GlobalBatchSampler):
    self._iterator = iterator
    self._sampler_repr = repr(sampler)  # What grain checks a restored state against.

  def __next__(self) -> dict[str, np.ndarray]:
    return next(self._iterator)

  def get_state(self) -> dict[str, Any]:
    return self._iterator.get_state()

  def set_state(self, state: dict[str, Any]) -> None:
    """`state` may come from any process of a run with another process count: the position is global."""
    self._iterator.set_state(loader_state.for_sampler(state, self._sampler_repr))


def train_loader(data_config: ml_collections.ConfigDict, *, batch_size: int, seed: int) -> TrainLoader:
  """Shuffled, endlessly repeated batches of the train split: this process's rows of each
  global batch (see GlobalBatchSampler).

  `batch_size` is per process. Batches are dicts of numpy arrays whose fields depend on the
  dataset. Shapes: `image` f32[B, H, W, 3] in [-1, 1], `text` i32[B, text_len], the VQA fields
  `question` i32[B, question_len], `answer` i32[B, answer_len], `answer_id` and
  `question_type` i32[B] (indices into `vqa_vocabulary`'s lists), and the int32
  labels `num_objects` [B] and `shape`, `colour`, `size`, `row`, `col` [B, 3]
  (padded with -1); with `data_config.hard_negatives`, also `negative_text`
  i32[B, text_len] (see `shapes.hard_negative_caption`). AV-Digits: see
  `av_digits.PreprocessAvDigits`. `seed` is a non-negative 32-bit integer.

  With `config.data.worker_count` 0 (the default) the batches are read a batch at a time in this process
  (mmjax.data.batch_reader), and a dataset that asks for it (registry.Dataset.train_source) keeps its decoded
  train split in memory; with workers, grain's DataLoader reads them (in another row order).
  """
  if data_config.worker_count and not flags.FLAGS.is_parsed():
    # Grain 0.2.18 reads an absl flag when it starts workers, which raises unless flags were parsed.
    raise errors.ConfigError(
        f"config.data.worker_count={data_config.worker_count} starts Grain worker processes, which read absl flags: "
        "outside the mmjax scripts (which parse them), call absl.flags.FLAGS.mark_as_parsed() first, or set "
        "worker_count=0.")
  builder = prepare(data_config)
  source = _data_source(builder, train_split(data_config), data_config)
  shard_options = grain.sharding.ShardByJaxProcess(drop_remainder=True)
  sampler = GlobalBatchSampler(len(source), global_batch_size=batch_size * jax.process_count(), seed=seed,
                               shard_options=shard_options)
  operations = _operations(builder, data_config, True, train_split(data_config))
  if not data_config.worker_count:
    make_source = registry.dataset(data_config).train_source
    if make_source is not None:
      source = make_source(source, builder, data_config, train_split(data_config))
    return TrainLoader(batch_reader.BatchReader(source, sampler, operations, batch_size, shard_options), sampler)
  operations.append(grain.transforms.Batch(batch_size, drop_remainder=True))
  data_loader = grain.DataLoader(
      data_source=source,
      sampler=sampler,
      operations=operations,
      worker_count=data_config.worker_count,
      read_options=_READ_OPTIONS,
  )
  return TrainLoader(_GrainIterator(data_loader), sampler)


def _ceil_div(numerator: int, denominator: int) -> int:
  return -(-numerator // denominator)


def _stack(examples: Sequence[dict[str, Any]], batch_size: int, blank: dict[str, Any]) -> dict[str, np.ndarray]:
  """Stacks `examples` padded with `blank` rows to `batch_size`, marking real rows in `valid`.

  String fields (caption, question_text) become object arrays of str.
  """
  rows = list(examples) + [blank] * (batch_size - len(examples))
  batch = {key: (np.array([row[key] for row in rows], dtype=object) if isinstance(value, str)
                 else np.stack([row[key] for row in rows]))
           for key, value in blank.items()}
  batch["valid"] = np.arange(batch_size) < len(examples)
  return batch


def eval_batches(data_config: ml_collections.ConfigDict, split: str, *,
                 batch_size: int) -> Iterator[dict[str, np.ndarray]]:
  """One ordered pass over this process's contiguous shard of `split`.

  Batches have the train fields plus `caption` and `question_text` (object
  arrays of str) and a bool `valid` mask; the last batch is padded with zero
  rows (empty strings).
  Every process yields the same number of batches, so collective metrics
  never wait on a process that ran out early.
  """
  builder = prepare(data_config)
  source = _data_source(builder, split, data_config)
  operations = _operations(builder, data_config, False, split)

  def example_fn(record: dict[str, Any]) -> dict[str, Any]:
    for operation in operations:
      record = operation.map(record)
    return record

  process_count, process_index = jax.process_count(), jax.process_index()
  start = len(source) * process_index // process_count
  end = len(source) * (process_index + 1) // process_count
  # Shards differ in size by at most one example; every process loops as long as the largest.
  num_batches = _ceil_div(_ceil_div(len(source), process_count), batch_size)
  blank = {key: ("" if isinstance(value, str) else np.zeros_like(value))
           for key, value in example_fn(source[0]).items()}

  def batches() -> Iterator[dict[str, np.ndarray]]:
    for batch_start in range(start, start + num_batches * batch_size, batch_size):
      indices = list(range(batch_start, min(batch_start + batch_size, end)))
      yield _stack([example_fn(example) for example in source.__getitems__(indices)], batch_size, blank)

  return batches()
