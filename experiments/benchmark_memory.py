r"""The train step's memory as XLA plans it, per remat policy and compute dtype, and the largest batch that fits a
memory budget: `python -m experiments.benchmark --benchmark=memory`.

Why compile-only: the process's RSS cannot show what remat saves — XLA:CPU does not lower it, and the scripts keep
freed memory in malloc (mmjax.trainer.host_memory) — while the compiled executable's memory analysis
(`jax.jit(...).lower(...).compile().memory_analysis()`) states the bytes its buffer assignment needs. It is
deterministic (the same code, flags and jaxlib give the same bytes), so it can be measured on a busy machine.

Per device, for the real train step (mmjax.trainer.build_run's, state donated): `temp` (intermediates),
`argument` (state and batch), `output` (new state and metrics) and `alias` (outputs written into donated
arguments) bytes; `total` = argument + output − alias + temp, what the step holds at once.

The largest batch under the budget is searched for by compiling, because the bytes are not an exact function of
the batch (XLA's fusion and buffer-assignment choices change with the shapes: per-example bytes vary by ~1%), so an
extrapolated batch could be a few examples over. Secant steps from the reference batch and twice it estimate the
batch; steps out from the estimate, doubling, bracket it; bisection closes the bracket to one batch step (the
data-parallel device count). About 8–10 compiles per policy and dtype, 10–20 s each for configs/bench_clip_s.py
on this 2-core machine.
The search takes the bytes to grow with the batch; what it returns, B, is checked: total(B) ≤ budget < total(B + step).
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import ml_collections

from mmjax import errors, nn, trainer
from mmjax.parallel import sharding

MEMORY_FIELDS = ("temp", "argument", "output", "alias")
_SECANT_STEPS = 4  # Enough for the step's bytes, a line in the batch to ~1% plus the loss's batch² logits.


def step_memory(config: ml_collections.ConfigDict, example: dict[str, jax.ShapeDtypeStruct],
                batch_size: int) -> dict[str, Any]:
  """Bytes per device of the config's train step compiled for `batch_size` examples of `example`'s shapes
  ({field}_bytes for MEMORY_FIELDS and total_bytes), and the seconds lowering and compiling took."""
  config = config.copy_and_resolve_references()
  config.batch_size = batch_size
  run = trainer.build_run(config, example=example)
  batch_sharding = sharding.batch_sharding(run.mesh, run.rules)
  batch = {key: jax.ShapeDtypeStruct((batch_size, *spec.shape), spec.dtype, sharding=batch_sharding)
           for key, spec in run.task_inputs(example).items()}
  start = time.perf_counter()
  with run.context():
    analysis = run.jit_train_step().lower(run.abstract, batch).compile().memory_analysis()
  seconds = time.perf_counter() - start
  if analysis is None:
    raise errors.ConfigError(f"This JAX backend ({jax.default_backend()}) gives no memory analysis of a compiled "
                             "step.")
  memory = {f"{field}_bytes": getattr(analysis, f"{field}_size_in_bytes") for field in MEMORY_FIELDS}
  memory["total_bytes"] = (memory["argument_bytes"] + memory["output_bytes"] - memory["alias_bytes"]
                           + memory["temp_bytes"])
  return {**memory, "compile_s": seconds}


def largest_batch(total_bytes: Callable[[int], int], budget: int, start: int, step: int) -> int:
  """The largest multiple of `step` whose `total_bytes` is at most `budget` (0 if `step` does not fit), taking
  total_bytes to grow with the batch. Secant steps from `start` and 2·`start` (each through the last two batches
  measured, so that bytes that curve are followed too) estimate it; steps out from the estimate, doubling until
  they cross the budget, bracket it; bisection closes the bracket."""
  def fits(batch: int) -> bool:
    return batch == 0 or total_bytes(batch) <= budget

  def down(batch: float) -> int:
    return max(step, int(batch) // step * step)

  previous, estimate = start, 2 * start
  for _ in range(_SECANT_STEPS):
    slope = (total_bytes(estimate) - total_bytes(previous)) / (estimate - previous)
    previous, estimate = estimate, down(estimate + (budget - total_bytes(estimate)) / slope) if slope > 0 else estimate
    if abs(estimate - previous) <= max(step, estimate // 100):
      break
  stride = max(step, down(estimate / 100))
  if fits(estimate):
    low, high = estimate, estimate + stride
    while fits(high):
      low, stride = high, 2 * stride
      high = low + stride
  else:
    low, high = max(0, estimate - stride), estimate
    while not fits(low):
      high, stride = low, 2 * stride
      low = max(0, high - stride)
  while high - low > step:
    middle = (low + high) // 2 // step * step
    low, high = (middle, high) if fits(middle) else (low, middle)
  return low


def _memory_row(config: ml_collections.ConfigDict, example: dict[str, jax.ShapeDtypeStruct], budget: int,
                step: int) -> dict[str, Any]:
  """The step's bytes at `config.batch_size`, the largest batch within `budget` bytes, and what the search
  compiled: each batch's total, the number of compiles and their seconds."""
  measured: dict[int, dict[str, Any]] = {}

  def total_bytes(batch: int) -> int:
    if batch not in measured:
      measured[batch] = step_memory(config, example, batch)
    return measured[batch]["total_bytes"]

  total_bytes(config.batch_size)
  largest = largest_batch(total_bytes, budget, config.batch_size, step)
  return {**{key: value for key, value in measured[config.batch_size].items() if key != "compile_s"},
          "largest_batch": largest, "largest_batch_total_bytes": measured[largest]["total_bytes"] if largest else None,
          "compiles": len(measured), "compile_s": sum(m["compile_s"] for m in measured.values()),
          "totals_by_batch": {str(batch): m["total_bytes"] for batch, m in sorted(measured.items())}}


def memory_benchmark(config: ml_collections.ConfigDict, example: dict[str, jax.ShapeDtypeStruct], budget_gib: float,
                     policies: Sequence[str], dtypes: Sequence[str]) -> dict[str, Any]:
  """A row per remat policy and compute dtype (`config.model.remat`, `config.model.dtype`): the step's bytes at
  `config.batch_size`, and the largest batch whose total fits `budget_gib` GiB per device, with the compiles
  the search took."""
  for policy in policies:
    errors.check_choice(policy, nn.REMAT_POLICIES, "remat policy", "--remat")
  budget = int(budget_gib * 2**30)
  run = trainer.build_run(config, example=example)
  step = sharding.data_parallel_size(run.mesh, run.rules)
  rows = []
  for policy in policies:
    for dtype in dtypes:
      variant = config.copy_and_resolve_references()
      variant.model.remat, variant.model.dtype = policy, dtype
      rows.append({"remat": policy, "dtype": dtype, **_memory_row(variant, example, budget, step)})
      # The search takes minutes per row: a line each, for the person watching.
      print(f"remat={policy} dtype={dtype}: largest batch {rows[-1]['largest_batch']:,} ({rows[-1]['compiles']} "
            f"compiles, {rows[-1]['compile_s']:.0f} s)", file=sys.stderr, flush=True)
  return {"benchmark": "memory", "batch_size": config.batch_size, "budget_gib": budget_gib,
          "batch_step": step, "devices": run.mesh.size, "backend": jax.default_backend(),
          "params": sum(leaf.size for leaf in jax.tree.leaves(run.abstract.params)), "rows": rows}
