"""mmjax.data.sampler: the training order is grain's shuffle, whole epochs of it computed at once."""
import grain
import numpy as np
import pytest
from grain.experimental import index_shuffle

from mmjax.data import sampler


@pytest.mark.parametrize("num_records", [1, 2, 5, 480, 3000])
@pytest.mark.parametrize("seed", [0, 7, 2**32 - 1])
def test_an_epoch_order_is_grains_index_shuffle(num_records, seed):
  order = sampler.epoch_order(num_records, seed)
  expected = [index_shuffle(i, max_index=num_records - 1, seed=seed, rounds=4) for i in range(num_records)]
  assert order.tolist() == (expected if num_records > 1 else [0])
  assert sorted(order.tolist()) == list(range(num_records))


def test_larger_blocks_are_grains_and_the_largest_are_left_to_grain():
  """A 2^18-position block (70,000 records), checked at 200 positions; above 2^20 positions, or at n − 1 = 2^B
  (which grain's cipher cannot hold in B bits), epoch_order leaves the order to grain's per-record call."""
  order = sampler.epoch_order(70_000, 11)
  positions = np.random.default_rng(0).integers(0, 70_000, 200).tolist()
  assert [int(order[i]) for i in positions] == [index_shuffle(i, max_index=69_999, seed=11, rounds=4)
                                               for i in positions]
  assert sampler.epoch_order(2**20 + 2, 0) is None and sampler.epoch_order(2**16 + 1, 0) is None


@pytest.mark.parametrize("seed", [5, 2**32 - 3])  # The second's epoch seeds wrap around 2^32.
def test_record_keys_are_the_index_samplers_across_epochs_and_processes(seed):
  for shard_index in (0, 1):
    shards = grain.sharding.ShardOptions(shard_index=shard_index, shard_count=2)
    global_sampler = sampler.GlobalBatchSampler(37, global_batch_size=8, seed=seed, shard_options=shards)
    indices = list(range(150))  # Eight epochs: 300 global positions.
    assert global_sampler.record_keys(indices) == [global_sampler[i].record_key for i in indices]
