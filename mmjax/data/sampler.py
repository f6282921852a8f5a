"""The training order: one global shuffle dealt out by global batch, the same on any number of processes."""
from __future__ import annotations

import math
import sys
from collections.abc import Sequence

import grain
import numpy as np

from mmjax import errors


# grain's MapDataset.shuffle (0.2.18): per epoch e, position i → index_shuffle(i, n − 1, seed + e, rounds=4), a Simon
# cipher on blocks of B = max(16, ⌈log2(n − 1)⌉ rounded up to even) bits, applied again while the result is ≥ n.
_SHUFFLE_ROUNDS = 4
_MIN_BLOCK_BITS = 16
# Up to this block size an epoch's order is computed at once with numpy (an array of 2^B entries); above it, per
# record by grain's index_shuffle (whose cycle walk is then short: n ≥ 2^(B−2)).
_MAX_TABLE_BLOCK_BITS = 20
_MASK32 = 0xFFFFFFFF


def _seed_seq(seed: int, count: int) -> list[int]:
  """`count` words of C++'s std::seed_seq{seed}.generate (the round keys of grain's index_shuffle)."""
  words, n, s = [0x8B8B8B8B] * count, count, 1
  t = 11 if n >= 623 else 7 if n >= 68 else 5 if n >= 39 else 3 if n >= 7 else (n - 1) // 2
  p, q = (n - t) // 2, (n - t) // 2 + t

  def mix(x: int) -> int:
    return x ^ (x >> 27)

  for k in range(max(s + 1, n)):
    r1 = 1664525 * mix(words[k % n] ^ words[(k + p) % n] ^ words[(k - 1) % n]) & _MASK32
    r2 = (r1 + (s if k == 0 else k % n + (seed & _MASK32) if k <= s else k % n)) & _MASK32
    words[(k + p) % n] = (words[(k + p) % n] + r1) & _MASK32
    words[(k + q) % n] = (words[(k + q) % n] + r2) & _MASK32
    words[k % n] = r2
  for k in range(max(s + 1, n), max(s + 1, n) + n):
    r3 = 1566083941 * mix((words[k % n] + words[(k + p) % n] + words[(k - 1) % n]) & _MASK32) & _MASK32
    r4 = (r3 - k % n) & _MASK32
    words[(k + p) % n] ^= r3
    words[(k + q) % n] ^= r4
    words[k % n] = r4
  return words


def _block_bits(max_index: int) -> int:
  bits = math.ceil(math.log2(max_index))
  return max(bits + bits % 2, _MIN_BLOCK_BITS)


def _simon(values: np.ndarray, keys: Sequence[int], word_bits: int) -> np.ndarray:
  """grain's Simon encryption of uint64 `values` (blocks of 2·word_bits bits) with round keys `keys`."""
  mask = np.uint64((1 << word_bits) - 1)

  def rotl(x: np.ndarray, r: int) -> np.ndarray:
    return ((x << np.uint64(r)) | (x >> np.uint64(word_bits - r))) & mask

  def f(x: np.ndarray) -> np.ndarray:
    return (rotl(x, 1) & rotl(x, 8)) ^ rotl(x, 2)

  left, right = values >> np.uint64(word_bits), values & mask
  for i in range(0, len(keys), 2):
    left ^= f(right) ^ (np.uint64(keys[i]) & mask)
    right ^= f(left) ^ (np.uint64(keys[i + 1]) & mask)
  return (left << np.uint64(word_bits)) | right


def epoch_order(num_records: int, seed: int) -> np.ndarray | None:
  """int64 [n]: `[grain.experimental.index_shuffle(i, n − 1, seed, 4) for i in range(n)]` (n = num_records), one
  epoch of grain's shuffle, computed for all positions at once (None when its block is above _MAX_TABLE_BLOCK_BITS,
  or too small for n − 1 = 2^B, which grain's call truncates). For small datasets grain's call walks its cipher
  ~2^16 / n times per record (65 µs a record at 480 records here); this walks every position together, a few ms
  an epoch."""
  if num_records == 1:
    return np.zeros(1, np.int64)
  bits = _block_bits(num_records - 1)
  if bits > _MAX_TABLE_BLOCK_BITS or num_records > 2**bits:
    return None
  keys = _seed_seq(seed % 2**32, _SHUFFLE_ROUNDS)
  cipher = _simon(np.arange(2**bits, dtype=np.uint64), keys, bits // 2).astype(np.int64)
  order = cipher[:num_records]
  walking = np.flatnonzero(order >= num_records)
  while len(walking):
    order[walking] = cipher[order[walking]]
    walking = walking[order[walking] >= num_records]
  return order


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
    self._seed, self._num_records = seed, num_records
    self._epoch_orders: dict[int, np.ndarray | None] = {}  # The last epochs' orders (epoch_order), by epoch.

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

  def _epoch_order(self, epoch: int) -> np.ndarray | None:
    if epoch not in self._epoch_orders:
      if len(self._epoch_orders) >= 2:  # A batch spans at most two epochs.
        del self._epoch_orders[min(self._epoch_orders)]
      self._epoch_orders[epoch] = epoch_order(self._num_records, self._seed + epoch)
    return self._epoch_orders[epoch]

  def record_keys(self, indices: Sequence[int]) -> list[int]:
    """The record keys `self[index].record_key` of `indices`, without making their generators."""
    keys = []
    for index in indices:
      position = self._position(index)
      epoch, in_epoch = divmod(position, self._num_records)
      order = self._epoch_order(epoch)
      keys.append(int(order[in_epoch]) if order is not None else self._global_keys[position])
    return keys

  def record_rngs(self, indices: Sequence[int]) -> list[np.random.Generator]:
    """The generators `self[index].rng` of `indices`, without looking their keys up again: IndexSampler's, a
    Philox generator keyed by seed + position (grain 0.2.18; tests/data/test_batch_reader.py holds them equal)."""
    return [np.random.Generator(np.random.Philox(key=self._seed + self._position(index))) for index in indices]
