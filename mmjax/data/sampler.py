"""The training order: one global shuffle dealt out by global batch, the same on any number of processes."""
from __future__ import annotations

import sys
from collections.abc import Sequence

import grain
import numpy as np

from mmjax import errors


class GlobalBatchSampler:
  """Globally shuffled records, dealt out so that every global batch is the same whatever the
  number of processes.

  Grain's own sharding gives each process a contiguous range of the records to shuffle, so
  the global batch (and the loss) changes with the process count. Here position i of the
  one global shuffle (IndexSampler's, so a single process reads exactly what IndexSampler
  gives) goes to global batch i // G, and process p reads rows [p·b, (p+1)·b) of it (b = G /
  process count), which it alone loads and decodes. A run on 2 hosts thus sees the batches
  of the same run on 1 host, and the same config gives the same trajectory on any topology.
  """

  def __init__(self, num_records: int, *, global_batch_size: int, seed: int,
               shard_options: grain.sharding.ShardOptions):
    if global_batch_size % shard_options.shard_count:
      raise errors.ConfigError(f"Global batch size {global_batch_size} does not split over "
                               f"{shard_options.shard_count} processes.")
    # DataLoader asks for index k·shard_count + shard_index: this process's k-th record.
    self._shard_options = shard_options
    self._global_batch_size = global_batch_size
    self._local_batch_size = global_batch_size // shard_options.shard_count
    self._global_order = grain.samplers.IndexSampler(num_records, shuffle=True, num_epochs=None, seed=seed)
    # IndexSampler's record keys, without making each record's generator (about 40% of its cost), and its seed.
    self._global_keys = grain.MapDataset.range(num_records).shuffle(seed=seed)
    self._seed = seed

  def __len__(self) -> int:
    return sys.maxsize

  def __repr__(self) -> str:
    """Grain checks a restored loader state against this, so it must name everything that
    decides the order."""
    return (f"GlobalBatchSampler(order={self._global_order!r}, global_batch_size={self._global_batch_size}, "
            f"shard_options={self._shard_options!r})")

  def _position(self, index: int) -> int:
    """The position in the global order of DataLoader index `index` (see __init__)."""
    local_index, shard = divmod(index, self._shard_options.shard_count)
    batch, row = divmod(local_index, self._local_batch_size)
    return batch * self._global_batch_size + shard * self._local_batch_size + row

  def __getitem__(self, index: int) -> grain.RecordMetadata:
    record = self._global_order[self._position(index)]
    return grain.RecordMetadata(index=index, record_key=record.record_key, rng=record.rng)

  def record_keys(self, indices: Sequence[int]) -> list[int]:
    """The record keys `self[index].record_key` of `indices`, without making their generators."""
    return [self._global_keys[self._position(index)] for index in indices]

  def record_rngs(self, indices: Sequence[int]) -> list[np.random.Generator]:
    """The generators `self[index].rng` of `indices`, without looking their keys up again: IndexSampler's, a
    Philox generator keyed by seed + position (grain 0.2.18; tests/data/test_batch_reader.py holds them equal)."""
    return [np.random.Generator(np.random.Philox(key=self._seed + self._position(index))) for index in indices]
