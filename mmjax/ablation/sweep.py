"""What an ablation trains: the `Sweep` grid a config's `SWEEPS` dict describes, and its runs (point × seed)."""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from mmjax import errors, provenance

# The bookkeeping columns of results.csv (with the provenance of mmjax.provenance); a point may not use these
# names as keys. A sweep may report the numeric ones ("wall_s", "step") as metrics.
RESERVED_KEYS = ("run_id", "seed", "status", "error", "wall_s", "step", *provenance.KEYS)


@dataclasses.dataclass(frozen=True)
class Sweep:
  """One entry of a config's `SWEEPS` dict: `Sweep(**SWEEPS[name])`.

  points: one mapping per grid cell. A key without a dot is a `get_config` arg (merged into the
    args after the colon of `--config=file.py:args`, the point's value winning); a dotted key is
    a config override ({"optim.lr": 3e-4} → `--config.optim.lr=0.0003`). Values are str, int,
    float or bool.
  metrics: keys of the run's final metrics (its `final_metrics.json`) that the tables report, or "wall_s"
    (the run's wall seconds, a column of results.csv).
  columns: a key of the points whose values become column groups; the other keys label the rows.
  metric_names: display names, e.g. {"eval/test/accuracy": "Accuracy"}.
  lower_is_better: metrics whose best mean is the lowest (losses, errors).
  """
  points: Sequence[Mapping[str, Any]]
  metrics: Sequence[str]
  columns: str | None = None
  metric_names: Mapping[str, str] = dataclasses.field(default_factory=dict)
  lower_is_better: Sequence[str] = ()

  def __post_init__(self):
    # Sweeps are hand-written data: a bare string where a list belongs would otherwise be split into letters.
    for field in ("points", "metrics", "lower_is_better"):
      if isinstance(getattr(self, field), str):
        raise errors.ConfigError(f"Sweep {field}={getattr(self, field)!r}: give a list, not a string.")
    if not all(isinstance(point, Mapping) for point in self.points):
      raise errors.ConfigError(f"Sweep points {list(self.points)}: each point is a dict of config args/overrides.")
    # Stored as tuples and plain dicts, so a sweep cannot change under the runner.
    object.__setattr__(self, "points", tuple(dict(point) for point in self.points))
    object.__setattr__(self, "metrics", tuple(self.metrics))
    object.__setattr__(self, "metric_names", dict(self.metric_names))
    object.__setattr__(self, "lower_is_better", tuple(self.lower_is_better))
    if not self.points or not self.metrics:
      raise errors.ConfigError("A Sweep needs at least one point and one metric.")
    for point in self.points:
      for key, value in point.items():
        if not isinstance(key, str) or not key or key in RESERVED_KEYS or re.search(r"[,=\s]", key):
          raise errors.ConfigError(f"Sweep point key {key!r} in {point}: keys are non-empty names without "
                                   f"commas, '=' or spaces, other than {list(RESERVED_KEYS)}.")
        if not isinstance(value, (str, int, float)) or ("." not in key and "," in str(value)):
          raise errors.ConfigError(f"Sweep point value {key}={value!r}: values are str, int, float or bool, "
                                   "and a get_config arg's value has no comma.")
      if self.columns is not None and self.columns not in point:
        raise errors.ConfigError(f"Sweep point {point} lacks the columns key {self.columns!r}.")
    run_ids = Counter(run_id(point, 0) for point in self.points)
    if max(run_ids.values()) > 1:
      raise errors.ConfigError(f"Sweep points repeat: {[i for i, n in run_ids.items() if n > 1]}.")
    unknown = (set(self.metric_names) | set(self.lower_is_better)) - set(self.metrics)
    if unknown or len(set(self.metrics)) < len(self.metrics):
      raise errors.ConfigError(f"Sweep metrics {list(self.metrics)} repeat one, or metric_names / lower_is_better "
                               f"name metrics not in it: {sorted(unknown)}.")

  @property
  def row_keys(self) -> tuple[str, ...]:
    """The point keys that label rows: every key but `columns`, in order of first appearance."""
    keys = dict.fromkeys(key for point in self.points for key in point if key != self.columns)
    return tuple(keys)

  def metric_name(self, metric: str) -> str:
    return self.metric_names.get(metric, metric)


def format_value(value: Any) -> str:
  """How a point value is written everywhere (CLI, run ids, CSV, tables): floats in their
  shortest exact form (3e-4 → "0.0003"), booleans as absl parses them ("true"/"false")."""
  if isinstance(value, bool):
    return str(value).lower()
  return repr(value) if isinstance(value, float) else str(value)


def point_label(point: Mapping[str, Any]) -> str:
  """`key=value,...`: how a point reads in progress lines, and the start of its run ids."""
  return ",".join(f"{key}={format_value(value)}" for key, value in point.items())


def run_id(point: Mapping[str, Any], seed: int) -> str:
  """A readable, filesystem-safe directory name for one run, e.g. `fusion=attention,seed=1`."""
  text = ",".join(filter(None, [point_label(point), f"seed={seed}"]))
  slug = re.sub(r"[^A-Za-z0-9._,=+-]", "_", text)
  if len(slug) > 150:  # Distinct long ids stay distinct, and within any filesystem's name limit.
    slug = f"{slug[:130]}-{hashlib.sha1(text.encode()).hexdigest()[:10]}"
  return slug


@dataclasses.dataclass(frozen=True)
class Run:
  """One training run of a sweep: a point trained with one seed."""
  point: Mapping[str, Any]
  seed: int

  @property
  def run_id(self) -> str:
    return run_id(self.point, self.seed)

  @property
  def label(self) -> str:
    return f"{point_label(self.point) or '(base config)'} seed={self.seed}"


def plan(sweep: Sweep, seeds: Sequence[int]) -> list[Run]:
  """Every run, seed-major: a sweep stopped early has the whole grid at fewer seeds."""
  return [Run(point, seed) for seed in seeds for point in sweep.points]


def load_sweep(config: str, name: str) -> Sweep:
  """`Sweep(**SWEEPS[name])` of the config file in `config` ("file.py" or "file.py:args").

  Sweeps are plain data in the config file, so that configs import nothing from mmjax; every
  check of a sweep is `Sweep`'s, and its errors name the file and the sweep."""
  path = config.partition(":")[0]
  if not os.path.isfile(path):
    raise errors.ConfigError(f"--config={config}: {path} is not a file.")
  spec = importlib.util.spec_from_file_location("ablate_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  sweeps = getattr(module, "SWEEPS", None)
  if not isinstance(sweeps, Mapping):
    raise errors.ConfigError(f"{path} has no SWEEPS dict; define SWEEPS = {{name: dict(points=..., metrics=...)}} "
                             "beside get_config.")
  errors.lookup(sweeps, name, "sweep", f"SWEEPS of {path}")
  fields = [field.name for field in dataclasses.fields(Sweep)]
  settings = sweeps[name]
  if not isinstance(settings, Mapping):
    raise errors.ConfigError(f"SWEEPS[{name!r}] in {path} is a {type(settings).__name__}; write it as "
                             "dict(points=..., metrics=...).")
  unknown = sorted(set(settings) - set(fields))
  missing = [field for field in ("points", "metrics") if field not in settings]
  if unknown or missing:
    problems = [f"{what} keys {keys}" for what, keys in (("unknown", unknown), ("missing", missing)) if keys]
    raise errors.ConfigError(f"SWEEPS[{name!r}] in {path}: {' and '.join(problems)}; the keys are {fields} "
                             "(points and metrics required).")
  try:
    return Sweep(**settings)
  except errors.ConfigError as e:
    raise errors.ConfigError(f"SWEEPS[{name!r}] in {path}: {e}") from None
