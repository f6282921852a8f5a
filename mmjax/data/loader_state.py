"""A train loader's saved position, carried over to a run with another number of processes.

The loader's global batches do not depend on the process count (sampler.GlobalBatchSampler), so its position
is really "k global batches read". Grain's DataLoader state counts records of one process's share instead, per
worker, and names the process (the sampler's repr holds its shard index and count), so a checkpoint of 2
processes cannot be restored as is by 1 or 4. `for_sampler` rewrites it for the process that restores it.
"""
from __future__ import annotations

import re
from typing import Any

# The part of GlobalBatchSampler's repr that depends on the process: global batch size, shard index, shard count.
_PROCESS_PART = re.compile(r"global_batch_size=(\d+), shard_options=\w+\(shard_index=(\d+), shard_count=(\d+)")


def _process_part(sampler_repr: str) -> tuple[int, int, int] | None:
  match = _PROCESS_PART.search(sampler_repr)
  return tuple(int(group) for group in match.groups()) if match else None


def for_sampler(state: dict[str, Any], sampler_repr: str) -> dict[str, Any]:
  """`state`, a grain DataLoader state saved by any process of a run with any process count, as the state of the
  process whose GlobalBatchSampler has repr `sampler_repr`, at the same global batch.

  A state of this very process, or of another sampler (another seed, dataset or global batch size), is returned
  unchanged: grain's own check then accepts it, or names what differs. The worker count must be the one saved.
  """
  saved, here = _process_part(state["sampler"]), _process_part(sampler_repr)
  same_order = _PROCESS_PART.sub("", state["sampler"]) == _PROCESS_PART.sub("", sampler_repr)
  if saved is None or here is None or saved == here or saved[0] != here[0] or not same_order:
    return state
  global_batch_size, saved_index, saved_count = saved
  _, index, count = here
  # Grain gives process p of S, worker w of W (one "worker" if W = 0), every (W·S)-th record from p + w·S, and
  # stores the last index it handed out: last = p - W·S + w·S + records·W·S. Each worker batches its own records.
  workers = max(state["worker_count"], 1)
  last_seen = {}
  for worker, saved_last in state["last_seen_indices"].items():
    records = (saved_last - saved_index + workers * saved_count - int(worker) * saved_count) // (workers * saved_count)
    batches, partial = divmod(records, global_batch_size // saved_count)
    if partial:
      raise ValueError(f"Loader state {state} stops inside a batch; a checkpoint is only written between batches.")
    records = batches * (global_batch_size // count)
    last_seen[worker] = index - workers * count + int(worker) * count + records * workers * count
  return {**state, "last_seen_indices": last_seen, "sampler": sampler_repr}
