r"""Does the input pipeline keep up with the train step? `python -m experiments.benchmark --benchmark=loader
--config=<any training config>`.

Both sides are the trainer's own: the loader is `mmjax.data.train_loader` of the config's data block, batch size
and seed (what mmjax.trainer.loop reads from), and the step is mmjax.trainer.build_run's jitted train step
(state donated), fed the loader's own batches already on the devices. Reported: the loader's examples/s, the
step's examples/s, and their ratio, how many times over the loader could feed the step (the target is ≥ 10).

Each is the median over `rounds` of a timed window of at least `window_s` seconds (and at least 2 batches or
steps); a round times the loader, then the step, so a burst of other load on a shared machine lands on both
alike, and the ratio of the medians is comparable within one run even where the absolute figures are not.
The loader runs in this process beside nothing else (with `config.data.worker_count` workers, if any), as it
would if training overlapped it perfectly with the step.
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np

from mmjax import data as mmdata
from mmjax import errors, trainer

TARGET = 10  # How many times the step's demand the loader should deliver (issue 20).


def _window(advance: Callable[[], Any], min_seconds: float, min_count: int = 2) -> float:
  """Calls per second of `advance` (which waits for its own result) over at least `min_seconds` and
  `min_count` calls."""
  count, start = 0, time.perf_counter()
  while count < min_count or time.perf_counter() - start < min_seconds:
    advance()
    count += 1
  return count / (time.perf_counter() - start)


def loader_benchmark(config: ml_collections.ConfigDict, rounds: int = 3, window_s: float = 2.0,
                     name: str = "") -> dict[str, Any]:
  """The config's training loader against its train step, in examples/s; see the module docstring. `name` says
  which config it is (its file and arg), for the table."""
  if rounds < 1 or window_s < 0:
    raise errors.ConfigError(f"--loader_rounds={rounds} must be ≥ 1 and --loader_window_s={window_s} ≥ 0.")
  run = trainer.build_run(config)
  start = time.perf_counter()
  loader = mmdata.train_loader(config.data, batch_size=run.batch_size, seed=config.seed)
  batches = [run.task_inputs(next(loader)) for _ in range(2)]
  first_batches_s = time.perf_counter() - start  # Opening the data and starting any workers included.
  with run.context():
    state = run.init_state()
    device_batches = [run.to_device(batch) for batch in batches]
    step_fn = run.jit_train_step().lower(state, device_batches[0]).compile()
    state, metrics = step_fn(state, device_batches[0])
    jax.block_until_ready(metrics)
    steps = 0

    def step() -> None:
      nonlocal state, metrics, steps
      state, metrics = step_fn(state, device_batches[steps % len(device_batches)])
      jax.block_until_ready(metrics)
      steps += 1

    loader_rates, step_rates = [], []
    for _ in range(rounds):
      loader_rates.append(_window(lambda: next(loader), window_s) * run.batch_size)
      step_rates.append(_window(step, window_s) * run.batch_size)
  if not np.isfinite(float(metrics["loss"])):
    raise errors.NonFiniteError(f"The benchmarked step's loss is {float(metrics['loss'])}.")
  loader_rate, step_rate = statistics.median(loader_rates), statistics.median(step_rates)
  return {
      "benchmark": "loader",
      "config": name,
      "dataset": config.data.name,
      "variant": config.data.get("variant") or "",
      "task": config.task.name,
      "model": config.model.name,
      "batch_size": config.batch_size,
      "worker_count": config.data.worker_count,
      "rounds": rounds,
      "window_s": window_s,
      "first_batches_s": first_batches_s,
      "loader_examples_per_s": loader_rate,
      "step_examples_per_s": step_rate,
      "loader_over_step": loader_rate / step_rate,
      "target": TARGET,
      "loader_examples_per_s_rounds": loader_rates,
      "step_examples_per_s_rounds": step_rates,
  }
