"""Training batches read a batch at a time: the batches and the state of `grain.DataLoader` with no workers, without
its per-record machinery.

Why: on this project's 2-core machine grain's DataLoader spends most of its time per record outside the data's own
work (an iterator stack with statistics around every record, a Philox generator per record whether or not an
operation is random, one read call per record), and the operations ran per example. The loader fell to 2–3× what
the train step consumes (docs/performance.md#the-input-pipeline). Here one call reads a batch's records
(`__getitems__`, or rows of the columns of an `InMemoryColumns` source), and operations that have a batch form
(`map_batch`, `random_map_batch`) run once on the batch's arrays; the others run per example, as before.

Exactness: the records, their order, each record's generator (the same `grain.RecordMetadata.rng`, handed to every
random operation in turn) and the stacking are grain's, and `get_state`/`set_state` read and write grain's
DataLoader state (worker count 0), so checkpoints carry over both ways (tests/data/test_batch_reader.py checks
both against grain).
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

import grain
import numpy as np

# grain.DataLoader's state format (`version` in its state, grain 0.2.18), written so grain can restore ours.
_GRAIN_STATE_VERSION = 2


class Sampler(Protocol):
  """What the reader needs of sampler.GlobalBatchSampler."""

  def record_keys(self, indices: Sequence[int]) -> list[int]: ...

  def record_rngs(self, indices: Sequence[int]) -> list[np.random.Generator]: ...


def collate(records: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
  """Records → one array per field, rows in order: bytes and str fields, and arrays whose shapes differ (a
  variable-length clip), become 1-D object arrays, the rest are stacked (a scalar field becomes [B])."""
  batch = {}
  for key, value in records[0].items():
    values = [record[key] for record in records]
    if not isinstance(value, (bytes, str)):
      try:
        batch[key] = np.stack(values)
        continue
      except ValueError:  # Shapes differ (np.stack checks them faster than comparing np.shape of each).
        pass
    batch[key] = np.empty(len(values), dtype=object)
    batch[key][:] = values
  return batch


class InMemoryColumns(Sequence[dict[str, Any]]):
  """A data source's records, decoded once and kept as one array per field (`collate` of all of them).

  For small splits whose decoding costs more than everything else (AV-Digits: 6,000 records of ~17 kB, read and
  decoded at ~2,000/s, then sliced at millions of rows/s). `repr` is the source's, which grain's state names.
  """

  def __init__(self, source: Sequence[dict[str, Any]], chunk: int = 1024):
    self._repr = repr(source)
    chunks = [collate(source.__getitems__(range(start, min(start + chunk, len(source)))))
              for start in range(0, len(source), chunk)]
    self._columns = {key: np.concatenate([part[key] for part in chunks]) for key in chunks[0]}
    self._length = len(source)

  def __len__(self) -> int:
    return self._length

  def __getitem__(self, key: int) -> dict[str, Any]:
    return {field: column[key] for field, column in self._columns.items()}

  def __getitems__(self, keys: Sequence[int]) -> list[dict[str, Any]]:
    return [self[key] for key in keys]

  def __repr__(self) -> str:
    return self._repr

  @property
  def fields(self) -> list[str]:
    return list(self._columns)

  def column(self, field: str) -> np.ndarray:
    return self._columns[field]

  def replace_column(self, field: str, values: np.ndarray) -> None:
    """Holds `values` (one per record) as `field` instead, e.g. images decoded once."""
    if len(values) != self._length:
      raise ValueError(f"{len(values)} values for the {self._length} records of {field!r}.")
    self._columns[field] = values

  def columns(self, keys: Sequence[int]) -> dict[str, np.ndarray]:
    """`collate(self.__getitems__(keys))`, sliced from the columns."""
    rows = np.asarray(keys)
    return {field: column[rows] for field, column in self._columns.items()}


def _rows(batch: Mapping[str, np.ndarray]) -> list[dict[str, Any]]:
  return [{key: column[row] for key, column in batch.items()} for row in range(len(next(iter(batch.values()))))]


def _apply(operation: grain.transforms.Map | grain.transforms.RandomMap,
           data: dict[str, np.ndarray] | list[dict[str, Any]],
           rngs: Sequence[np.random.Generator]) -> dict[str, np.ndarray] | list[dict[str, Any]]:
  """`operation` on a batch (a dict of arrays, or a list of examples): its batch form if it has one, on the batch's
  arrays; else per example, as grain applies it."""
  random = isinstance(operation, grain.transforms.RandomMap)
  if hasattr(operation, "random_map_batch" if random else "map_batch"):
    batch = data if isinstance(data, dict) else collate(data)
    return operation.random_map_batch(batch, rngs) if random else operation.map_batch(batch)
  examples = _rows(data) if isinstance(data, dict) else data
  if random:
    return [operation.random_map(example, rng) for example, rng in zip(examples, rngs)]
  return [operation.map(example) for example in examples]


class BatchReader(Iterator[dict[str, np.ndarray]]):
  """grain.DataLoader(source, sampler, operations + [Batch(batch_size, drop_remainder=True)], worker_count=0,
  shard_options) as an iterator: the same batches and the same state."""

  def __init__(self, source: Sequence[dict[str, Any]], sampler: Sampler,
               operations: Sequence[grain.transforms.Map | grain.transforms.RandomMap], batch_size: int,
               shard_options: grain.sharding.ShardOptions):
    self._source, self._sampler, self._operations = source, sampler, list(operations)
    self._batch_size, self._shard_options = batch_size, shard_options
    self._random = any(isinstance(operation, grain.transforms.RandomMap) for operation in self._operations)
    self._next_index = 0  # Records of this process's share read so far.

  def __next__(self) -> dict[str, np.ndarray]:
    count, shard = self._shard_options.shard_count, self._shard_options.shard_index
    # grain asks the sampler for index k·count + shard, k = this process's record counter.
    indices = [(self._next_index + row) * count + shard for row in range(self._batch_size)]
    keys = self._sampler.record_keys(indices)
    rngs = self._sampler.record_rngs(indices) if self._random else []
    columns = getattr(self._source, "columns", None)
    data: dict[str, np.ndarray] | list[dict[str, Any]] = columns(keys) if columns else self._source.__getitems__(keys)
    for operation in self._operations:
      data = _apply(operation, data, rngs)
    batch = data if isinstance(data, dict) else collate(data)
    self._next_index += self._batch_size
    return batch

  def get_state(self) -> dict[str, Any]:
    """grain.DataLoader's state after the same batches (one worker's view: `last_seen_indices["0"]`)."""
    count, shard = self._shard_options.shard_count, self._shard_options.shard_index
    return {"version": _GRAIN_STATE_VERSION,
            "last_seen_indices": {"0": shard - count + self._next_index * count},
            "last_worker_index": -1, "worker_count": 0,
            "sampler": repr(self._sampler), "data_source": repr(self._source)}

  def set_state(self, state: Mapping[str, Any]) -> None:
    """Continues after the batches of `state`, a state of this reader or of grain's DataLoader of the same
    sampler and source with no workers (grain's checks and messages)."""
    if state["worker_count"] != 0:
      raise ValueError(f"Worker count in checkpoint does not match dataloader worker count.\nworker count in "
                       f"checkpoint: {state['worker_count']}\nworker count in dataloader: 0")
    for key, here in (("sampler", repr(self._sampler)), ("data_source", repr(self._source))):
      if state[key] != here:
        raise ValueError(f"{key} in checkpoint does not match the loader's.\nin checkpoint: {state[key]}\n"
                         f"in the loader: {here}")
    count, shard = self._shard_options.shard_count, self._shard_options.shard_index
    self._next_index = (state["last_seen_indices"]["0"] + count - shard) // count
