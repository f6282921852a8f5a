"""experiments/benchmark_memory.py: the compiled step's bytes add up to its state and batch, and the largest-batch
search is exact (checked against every batch) for bytes that are not a line in the batch."""
import json

import jax
import numpy as np
import pytest

from configs import bench_clip_s
from experiments import benchmark, benchmark_memory
from mmjax import errors, publish
from mmjax.parallel import sharding


def _bytes(tree) -> int:
  return sum(np.dtype(leaf.dtype).itemsize * leaf.size for leaf in jax.tree.leaves(tree))


def test_step_memory_counts_the_donated_state_and_the_batch(shapes_data_dir):
  """One real compile of the smoke step: its arguments are exactly the state (donated: aliased to the new state)
  plus the batch, and total adds up."""
  config = bench_clip_s.get_config("smoke")
  config.data.data_dir = shapes_data_dir
  example = benchmark.example_spec(config)
  memory = benchmark_memory.step_memory(config, example, batch_size=config.batch_size)
  run = benchmark_memory.trainer.build_run(config, example=example)
  rows_per_device = config.batch_size // sharding.data_parallel_size(run.mesh, run.rules)
  assert memory["alias_bytes"] == _bytes(run.abstract)  # Replicated: every device holds the whole state.
  assert memory["argument_bytes"] == _bytes(run.abstract) + rows_per_device * _bytes(example)
  assert memory["temp_bytes"] > 0 and memory["output_bytes"] >= memory["alias_bytes"]
  assert memory["total_bytes"] == (memory["argument_bytes"] + memory["output_bytes"] - memory["alias_bytes"]
                                   + memory["temp_bytes"])


def _curve(batch: int) -> int:
  """Bytes that grow with the batch, faster than a line, with a jitter of a few percent per batch."""
  return 50_000 + 3_000 * batch + batch * batch + (batch * 7919 % 13) * 90


@pytest.mark.parametrize("budget,start,step", [(400_000, 8, 1), (3_000_000, 8, 1), (3_000_000, 64, 8),
                                               (60_000, 8, 1), (40_000, 8, 8), (900_000, 256, 4)])
def test_largest_batch_is_the_last_that_fits(budget, start, step):
  measured = []

  def total_bytes(batch):
    measured.append(batch)
    return _curve(batch)

  expected = max((b for b in range(step, 100_000, step) if _curve(b) <= budget), default=0)
  assert benchmark_memory.largest_batch(total_bytes, budget, start, step) == expected
  assert all(batch % step == 0 for batch in measured[2:])
  assert len(set(measured)) <= 14  # Compiles, for the real step: an estimate, a bracket and a bisection.


def test_memory_benchmark_rows_and_table(shapes_data_dir, monkeypatch):
  """A row per policy and dtype, each compiled with its own policy and dtype (a stand-in for the compile)."""
  config = bench_clip_s.get_config("smoke")
  config.data.data_dir = shapes_data_dir
  seen = []

  def step_memory(variant, example, batch_size):
    seen.append((variant.model.remat, variant.model.dtype, batch_size))
    temp = 1000 * batch_size * (1 if variant.model.remat == "full" else 3)
    return {"temp_bytes": temp, "argument_bytes": 500, "output_bytes": 400, "alias_bytes": 400,
            "total_bytes": 500 + temp, "compile_s": 0.5}

  monkeypatch.setattr(benchmark_memory, "step_memory", step_memory)
  result = benchmark_memory.memory_benchmark(config, benchmark.example_spec(config), 100_500 / 2**30,
                                             ["none", "full"], ["float32", "bfloat16"])
  step = result["batch_step"]  # Batches split evenly over the data-parallel devices.
  assert step == jax.device_count()
  # 500 + 3000·B ≤ 100,500 bytes for B ≤ 33 without remat; 500 + 1000·B for B ≤ 100 with.
  assert [(row["remat"], row["dtype"], row["largest_batch"]) for row in result["rows"]] == [
      ("none", "float32", 33 // step * step), ("none", "bfloat16", 33 // step * step),
      ("full", "float32", 100 // step * step), ("full", "bfloat16", 100 // step * step)]
  assert {(remat, dtype) for remat, dtype, _ in seen} == {(r["remat"], r["dtype"]) for r in result["rows"]}
  assert result["rows"][0]["temp_bytes"] == 3000 * config.batch_size
  assert result["rows"][0]["compiles"] == len({b for r, d, b in seen if (r, d) == ("none", "float32")})
  assert json.loads(json.dumps(result)) == result
  table = publish.benchmark_table([result])
  assert f"| full | bfloat16 | 0.0 | 0.0 | 0.0 | 0.0 | 0.0 | {100 // step * step} | 0.1 |" in table
  with pytest.raises(errors.ConfigError, match="Unknown remat policy 'some'"):
    benchmark_memory.memory_benchmark(config, benchmark.example_spec(config), 1.0, ["some"], ["float32"])
