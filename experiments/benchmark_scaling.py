r"""How the train step's cost grows with the work: `python -m experiments.benchmark --benchmark=scaling
--config=configs/bench_clip_s.py`.

Runs the train benchmark (experiments.benchmark.train_benchmark: the real train step on random batches) once per
row of `config.bench.scaling`: the config's model at each of `batch_sizes`, then each of `models` (changes to both
towers, e.g. wider or deeper) at `model_batch_size`. Each row reports steps/s, examples/s, ms per example, the
analytic and XLA GFLOP per step, achieved GFLOP/s and MFU against a matmul peak measured in the same row, so a
reader sees where the cost per example stops falling as the batch grows and how it grows with the model.
Timing uses `scaling.windows` × `scaling.window_steps` steps per row (fewer than the train benchmark's, to keep
the whole table within minutes here).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import ml_collections

# The train benchmark's figures kept per row.
ROW_KEYS = ("params", "batch_size", "steps_per_s", "examples_per_s", "analytic_gflop_per_step", "gflop_per_step",
            "achieved_gflops", "peak_matmul_gflops", "mfu", "cores_busy", "step_temp_mb", "compile_s")


def scaled_config(config: ml_collections.ConfigDict, batch_size: int,
                  towers: Mapping[str, Any] | None = None) -> ml_collections.ConfigDict:
  """A copy of `config` at `batch_size`, with `towers` (e.g. {"width": 512}) set on both towers, timed with the
  scaling block's windows."""
  scaled = ml_collections.ConfigDict(config.to_dict())
  scaled.batch_size = scaled.eval_batch_size = batch_size
  scaled.bench.update(windows=config.bench.scaling.windows, window_steps=config.bench.scaling.window_steps,
                      warmup_steps=config.bench.scaling.warmup_steps)
  for tower in ("image", "text"):
    scaled.model[tower].update(dict(towers or {}))
  return scaled


def scaling_benchmark(config: ml_collections.ConfigDict,
                      train_benchmark: Callable[[ml_collections.ConfigDict, bool], dict]) -> dict:
  """A row per batch size of the config's model and per model variant; see the module docstring."""
  scaling = config.bench.scaling
  plan = [("base", batch_size, {}) for batch_size in scaling.batch_sizes]
  plan += [(name, scaling.model_batch_size, dict(towers)) for name, towers in scaling.models.items()]
  rows = []
  for name, batch_size, towers in plan:
    result = train_benchmark(scaled_config(config, batch_size, towers), False)
    tower = {key: config.model.text.get(key) for key in ("width", "depth", "num_heads", "mlp_dim")} | towers
    rows.append({"model": name, **tower, **{key: result[key] for key in ROW_KEYS},
                 "ms_per_example": 1000 / result["examples_per_s"]})
  return {"benchmark": "scaling", "rows": rows, "windows": scaling.windows, "window_steps": scaling.window_steps}
