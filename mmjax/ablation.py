r"""Paper-style ablations: a config's `sweep(name)` grid × seeds, one training subprocess per run,
every run's result in `results.csv`, and tables and a plot made from that file alone.

  python -m experiments.ablate --config=configs/av_digits.py --sweep=fusion --seeds=3 --workdir=runs/ablate

Each run is `python -m experiments.train` in `<workdir>/runs/<run_id>` (its training workdir, with
its output in `ablate.log`): a crash, an out-of-memory kill or an XLA abort ends that run only, and
is recorded as a failed row with its error while the sweep goes on. Runs go seed-major (every
point with the first seed, then the second seed, ...) so a partial sweep already fills the table.

Restarting resumes: runs whose latest row is ok are skipped, failed ones are retried (each retry
resumes from the run's newest checkpoint). Several `ablate` processes may share a workdir: a run
is claimed by creating `ablate.claim` (pid, host) in its directory — a claim left by a dead
process is taken over — and `results.csv` is only changed under a lock file, by rewriting it
whole and renaming it into place. When a run has several rows (a failure, then a retry), the
last one counts.

Tables (`table.md`, `table.tex`) and the plot (`plot.png`) report, per cell, the mean ± std over
the seeds of the ok runs (std with ddof=1; "—" for a single run). A metric whose every value lies
in [0, 1] (accuracy, recall, F1) is shown ×100 with one decimal; any other with three significant
digits of its largest mean. The best mean per column is in bold: the highest, or the lowest for
metrics in `Sweep.lower_is_better`.
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import fcntl
import hashlib
import importlib.util
import inspect
import json
import math
import os
import re
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from mmjax import errors

RESULTS_FILE = "results.csv"
REPORT_FILES = ("table.md", "table.tex", "plot.png")
RUN_LOG = "ablate.log"
CLAIM_FILE = "ablate.claim"
SETTINGS_FILE = "ablate.json"
LOCK_FILE = ".results.lock"
REPORT_EVERY_S = 60  # Interim tables and plot while a sweep runs, at most this often (plotting takes ~0.5 s).
OK, FAILED = "ok", "failed"
# The bookkeeping columns of results.csv; a point may not use these names as keys.
RESERVED_KEYS = ("run_id", "seed", "status", "error", "wall_s")
TRAIN_COMMAND = (sys.executable, "-m", "experiments.train")
Row = Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class Sweep:
  """The grid a config's `sweep(name)` returns.

  points: one mapping per grid cell. A key without a dot is a `get_config` arg (merged into the
    args after the colon of `--config=file.py:args`, the point's value winning); a dotted key is
    a config override ({"optim.lr": 3e-4} → `--config.optim.lr=0.0003`). Values are str, int,
    float or bool.
  metrics: keys of the final metrics that experiments.train prints, reported by the tables.
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
  """`sweep(name)` of the config file in `config` ("file.py" or "file.py:args")."""
  path = config.partition(":")[0]
  if not os.path.isfile(path):
    raise errors.ConfigError(f"--config={config}: {path} is not a file.")
  spec = importlib.util.spec_from_file_location("ablate_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  sweep_fn = getattr(module, "sweep", None)
  if not callable(sweep_fn) or not inspect.signature(sweep_fn).parameters:
    raise errors.ConfigError(f"{path} needs a `sweep(name)` function returning an mmjax.ablation.Sweep.")
  sweep = sweep_fn(name)
  if not isinstance(sweep, Sweep):
    raise errors.ConfigError(f"{path}: sweep({name!r}) returned a {type(sweep).__name__}, not an mmjax.ablation.Sweep.")
  return sweep


def parse_overrides(overrides: Iterable[str]) -> dict[str, str]:
  """`["optim.lr=0.1", "config.total_steps=10"]` → {"optim.lr": "0.1", "total_steps": "10"}."""
  parsed = {}
  for item in overrides:
    key, has_value, value = item.partition("=")
    key = key.removeprefix("config.")
    if not has_value or not key:
      raise errors.ConfigError(f"--override={item}: write it as key=value, e.g. --override=total_steps=200.")
    if key == "seed":
      raise errors.ConfigError("--override=seed=... : the seeds are set with --seeds and --seed_offset.")
    parsed[key] = value
  return parsed


def train_command(config: str, run: Run, run_dir: str, overrides: Mapping[str, str] = {},
                  train: Sequence[str] = TRAIN_COMMAND) -> list[str]:
  """The experiments.train command line of `run`: the point's args merged into those of
  `config` ("file.py:args"), then `overrides`, the point's dotted keys and the seed."""
  path, _, base_arg = config.partition(":")
  args = {}
  for item in filter(None, (part.strip() for part in base_arg.split(","))):
    name, has_value, value = item.partition("=")
    args[name] = value if has_value else None
  args.update({key: format_value(value) for key, value in run.point.items() if "." not in key})
  arg = ",".join(name if value is None else f"{name}={value}" for name, value in args.items())
  dotted = {**overrides, **{key: format_value(value) for key, value in run.point.items() if "." in key}}
  return [*train, f"--config={path}" + (f":{arg}" if arg else ""),
          *(f"--config.{key}={value}" for key, value in dotted.items()),
          f"--config.seed={run.seed}", f"--workdir={run_dir}"]


# ---- Bookkeeping: results.csv, claims, settings ----------------------------------------------------------------

@contextlib.contextmanager
def _locked(workdir: str) -> Iterator[None]:
  """Holds the workdir's lock: every change of results.csv and every claim happens under it."""
  with open(os.path.join(workdir, LOCK_FILE), "a") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)


def _replace(path: str, write: Callable[[str], None]) -> None:
  """Writes `path` through a temporary file, so a reader sees the old file or the new one."""
  temporary = f"{path}.tmp{os.getpid()}"
  write(temporary)
  os.replace(temporary, path)


def _write_text(path: str, text: str) -> None:
  def write(temporary):
    with open(temporary, "w") as f:
      f.write(text)
  _replace(path, write)


def read_rows(workdir: str) -> list[dict[str, str]]:
  """The rows of `<workdir>/results.csv` in the order they were added ([] if it does not exist)."""
  path = os.path.join(workdir, RESULTS_FILE)
  if not os.path.exists(path):
    return []
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


def latest_rows(rows: Iterable[Row]) -> dict[str, Row]:
  """run_id → the last row of that run."""
  return {row["run_id"]: row for row in rows}


def _append_row(workdir: str, row: Row) -> None:
  """Adds a row to results.csv (call under `_locked`); new columns widen the header."""
  rows = read_rows(workdir)
  header = list(rows[0].keys()) if rows else []
  header += [key for key in row if key not in header]

  def write(temporary):
    with open(temporary, "w", newline="") as f:
      writer = csv.DictWriter(f, header, restval="", lineterminator="\n")
      writer.writeheader()
      writer.writerows([*rows, row])
  _replace(os.path.join(workdir, RESULTS_FILE), write)


def _process_start(pid: int) -> str | None:
  """The start time of process `pid` in clock ticks (Linux), which tells a reused pid apart."""
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().rpartition(")")[2].split()[19]
  except OSError:
    return None


def _claim_is_live(claim: Mapping[str, Any]) -> bool:
  if claim.get("host") != socket.gethostname():
    return True  # Another host's process cannot be checked from here.
  try:
    os.kill(claim["pid"], 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return claim.get("start") is None or _process_start(claim["pid"]) == claim["start"]


def _claim(run_dir: str) -> bool:
  """Claims the run in `run_dir` for this process (call under `_locked`); False if a live process holds it."""
  path = os.path.join(run_dir, CLAIM_FILE)
  try:
    with open(path) as f:
      if _claim_is_live(json.load(f)):
        return False
    os.remove(path)  # A dead process's claim.
  except FileNotFoundError:
    pass
  except (json.JSONDecodeError, KeyError, TypeError):
    os.remove(path)  # A claim cut short by a crash while it was written.
  fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
  with os.fdopen(fd, "w") as f:
    json.dump({"pid": os.getpid(), "host": socket.gethostname(), "start": _process_start(os.getpid())}, f)
  return True


def _check_settings(workdir: str, config: str, overrides: Mapping[str, str]) -> None:
  """Records what the runs are trained with; a restart with other settings would mix
  incomparable runs in one table, so it is an error."""
  path_, _, arg = config.partition(":")
  settings = {"config": os.path.normpath(os.path.abspath(path_)), "config_args": arg, "overrides": dict(overrides)}
  path = os.path.join(workdir, SETTINGS_FILE)
  if os.path.exists(path):
    with open(path) as f:
      stored = json.load(f)
    if stored != settings:
      raise errors.ConfigError(
          f"{workdir} holds runs trained with {json.dumps(stored)}, not {json.dumps(settings)}: use a new "
          f"--workdir, or the same --config and --override flags (or delete {path} if the change is harmless).")
  else:
    _write_text(path, json.dumps(settings, indent=1, sort_keys=True) + "\n")


# ---- Running -------------------------------------------------------------------------------------------------------

def final_metrics(stdout: str) -> dict[str, Any] | None:
  """The JSON object experiments.train prints last (its first line is "{"), or None."""
  lines = stdout.splitlines()
  starts = [i for i, line in enumerate(lines) if line.strip() == "{"]
  if not starts:
    return None
  try:
    return json.loads("\n".join(lines[starts[-1]:]))
  except json.JSONDecodeError:
    return None


def error_message(stderr: str, returncode: int) -> str:
  """One line saying why a run failed: a script's `error: ...` message (with the lines that
  continue it) or else the last non-empty line of stderr (a traceback's exception)."""
  lines = [line.strip() for line in re.split(r"[\r\n]+", stderr) if line.strip()]
  errors_at = [i for i, line in enumerate(lines) if line.startswith("error: ")]
  if errors_at:
    message = " ".join(lines[errors_at[-1]:]).removeprefix("error: ")
  else:
    message = lines[-1] if lines else "no output on stderr"
  if returncode < 0:
    message = f"killed by {signal.Signals(-returncode).name} (out of memory?); last output: {message}"
  message = " ".join(message.split())
  return message if len(message) <= 500 else message[:497] + "..."


def _execute(command: Sequence[str], run_dir: str, env: Mapping[str, str]) -> tuple[int, str, str]:
  """Runs `command`, writing its stdout and stderr to `run_dir`/ablate.log as they come; returns
  (exit code, stdout, stderr). Interrupted, it asks the run to save a checkpoint and stop first."""
  with open(os.path.join(run_dir, RUN_LOG), "ab") as log:
    log.write(f"$ {shlex.join(command)}\n".encode())
    log.flush()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(env))
    outputs: dict[str, list[bytes]] = {"stdout": [], "stderr": []}
    log_lock = threading.Lock()

    def tee(stream, chunks: list[bytes]) -> None:
      for chunk in iter(lambda: stream.read1(1 << 16), b""):
        chunks.append(chunk)
        with log_lock:
          log.write(chunk)
          log.flush()

    threads = [threading.Thread(target=tee, args=(getattr(process, name), chunks), daemon=True)
               for name, chunks in outputs.items()]
    for thread in threads:
      thread.start()
    try:
      returncode = process.wait()
    except BaseException:
      if process.poll() is None:
        process.send_signal(signal.SIGTERM)  # experiments.train saves a checkpoint and stops.
      process.wait()
      raise
    finally:
      for thread in threads:
        thread.join()
  stdout, stderr = (b"".join(chunks).decode(errors="replace") for chunks in outputs.values())
  return returncode, stdout, stderr


def result_row(sweep: Sweep, run: Run, returncode: int, stdout: str, stderr: str, wall_s: float) -> dict[str, Any]:
  """The results.csv row of a finished subprocess: ok only if it exited 0 with every sweep metric finite."""
  metrics = final_metrics(stdout) if returncode == 0 else None
  scalars = {key: value for key, value in (metrics or {}).items()
             if isinstance(value, (int, float)) and not isinstance(value, bool)}
  error = ""
  if returncode != 0:
    error = error_message(stderr, returncode)
  elif metrics is None:
    error = "exited 0 without printing its final metrics (stopped on a signal?); rerun to resume it."
  else:
    missing = [m for m in sweep.metrics if not math.isfinite(scalars.get(m, math.nan))]
    if missing:
      error = f"no finite final value of {missing}; the run reported {sorted(scalars)}."
  row = {"run_id": run.run_id, **{key: format_value(value) for key, value in run.point.items()},
         "seed": run.seed, "status": FAILED if error else OK, "error": error, "wall_s": f"{wall_s:.1f}"}
  ordered = [m for m in sweep.metrics if m in scalars] + sorted(set(scalars) - set(sweep.metrics))
  row.update({key: repr(float(scalars[key])) for key in ordered})
  return row


def run_sweep(sweep: Sweep, config: str, workdir: str, seeds: Sequence[int], overrides: Mapping[str, str] = {},
              retry_failed: bool = True, train: Sequence[str] = TRAIN_COMMAND,
              progress: Callable[[str], None] = lambda line: print(line, flush=True)) -> list[dict[str, str]]:
  """Trains every run of `sweep` × `seeds` not yet finished in `workdir`, one subprocess each, then
  writes the reports; returns the latest row of every planned run (missing if another process
  still holds it). `config` is "file.py[:args]"; `train` the command that trains (tests fake it)."""
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  _check_settings(workdir, config, overrides)
  runs = plan(sweep, seeds)
  attempts = Counter(row["run_id"] for row in read_rows(workdir))
  latest = latest_rows(read_rows(workdir))
  status = {run.run_id: latest.get(run.run_id, {}).get("status") for run in runs}
  todo = [run for run in runs if status[run.run_id] != OK and (retry_failed or status[run.run_id] != FAILED)]
  finished, failed = sum(s == OK for s in status.values()), sum(s == FAILED for s in status.values())
  progress(f"{len(runs)} runs ({len(sweep.points)} points × {len(seeds)} seeds): {finished} finished, "
           f"{failed} failed{'' if retry_failed else ' (not retried)'}, {len(todo)} to do.")
  # Started from the directory of `configs/`, a training subprocess imports them like this process.
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")])))
  reported = time.monotonic()
  with _sigterm_raises():
    for run in todo:
      position = f"[{runs.index(run) + 1}/{len(runs)}] {run.label}"
      _train_one(sweep, config, workdir, position, run, attempts[run.run_id], overrides, train, env, progress)
      if time.monotonic() - reported > REPORT_EVERY_S and os.path.exists(os.path.join(workdir, RESULTS_FILE)):
        write_reports(sweep, workdir, seeds)  # The tables fill in while a long sweep goes on.
        reported = time.monotonic()
  if os.path.exists(os.path.join(workdir, RESULTS_FILE)):  # Not yet if another process holds every run.
    write_reports(sweep, workdir, seeds)
  latest = latest_rows(read_rows(workdir))
  return [latest[run.run_id] for run in runs if run.run_id in latest]


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
  """SIGTERM raises SystemExit, so a run in progress is told to stop and its claim is removed
  rather than the run being orphaned, still training, under a claim of a dead process."""
  if threading.current_thread() is not threading.main_thread():
    yield
    return

  def handle(signum, frame):
    del frame
    raise SystemExit(128 + signum)

  previous = signal.signal(signal.SIGTERM, handle)
  try:
    yield
  finally:
    signal.signal(signal.SIGTERM, previous)


def _train_one(sweep: Sweep, config: str, workdir: str, position: str, run: Run,
               attempts: int, overrides: Mapping[str, str], train: Sequence[str], env: Mapping[str, str],
               progress: Callable[[str], None]) -> None:
  """Claims, trains and records one run, unless another process has run it (`attempts`: its rows
  in results.csv when this process planned) or is running it."""
  run_dir = os.path.join(workdir, "runs", run.run_id)
  os.makedirs(run_dir, exist_ok=True)
  with _locked(workdir):
    if Counter(row["run_id"] for row in read_rows(workdir))[run.run_id] != attempts:
      progress(f"{position}: done by another process.")
      return
    if not _claim(run_dir):
      progress(f"{position}: running in another process.")
      return
  try:
    start = time.monotonic()
    returncode, stdout, stderr = _execute(train_command(config, run, run_dir, overrides, train), run_dir, env)
    row = result_row(sweep, run, returncode, stdout, stderr, time.monotonic() - start)
    with _locked(workdir):
      _append_row(workdir, row)
  finally:
    os.remove(os.path.join(run_dir, CLAIM_FILE))
  if row["status"] == OK:
    values = ", ".join(f"{metric}={float(row[metric]):.4g}" for metric in sweep.metrics)
    progress(f"{position}: ok in {float(row['wall_s']):.0f} s, {values}")
  else:
    progress(f"{position}: failed in {float(row['wall_s']):.0f} s: {row['error']} "
             f"(log: {os.path.join(run_dir, RUN_LOG)})")


# ---- Reports -------------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Cell:
  """One table cell: a metric of one point over the requested seeds."""
  values: tuple[float, ...]  # Of the ok runs, in seed order.
  failed: int                # Runs whose latest row failed (or lacks the metric).
  expected: int              # Seeds requested.

  @property
  def mean(self) -> float:
    return statistics.fmean(self.values) if self.values else math.nan

  @property
  def std(self) -> float:
    return statistics.stdev(self.values) if len(self.values) >= 2 else math.nan


@dataclasses.dataclass(frozen=True)
class Summary:
  """What the tables and the plot show, computed from results rows only."""
  sweep: Sweep
  seeds: tuple[int, ...]
  rows: tuple[tuple[str, ...], ...]     # One label per `sweep.row_keys`, in the sweep's point order.
  groups: tuple[str | None, ...]        # Values of `sweep.columns`; (None,) without columns.
  cells: Mapping[tuple[int, int, str], Cell]  # (row, group, metric); absent: no such point.
  scale: Mapping[str, float]            # 100 for a metric shown ×100.
  decimals: Mapping[str, int]

  def shown(self, value: float, metric: str) -> str:
    return f"{value * self.scale[metric]:.{self.decimals[metric]}f}"

  def is_best(self, row: int, group: int, metric: str) -> bool:
    """Whether this cell's shown mean is the column's best (ties are all best), among ≥ 2 cells."""
    means = {r: float(self.shown(cell.mean, metric)) for (r, g, m), cell in self.cells.items()
             if g == group and m == metric and cell.values}
    if len(means) < 2 or row not in means:
      return False
    best = (min if metric in self.sweep.lower_is_better else max)(means.values())
    return means[row] == best


def _float(value: Any) -> float:
  try:
    return float(value)
  except (TypeError, ValueError):
    return math.nan


def summarize(sweep: Sweep, rows: Iterable[Row], seeds: Sequence[int]) -> Summary:
  """The per-cell statistics of `rows` (results.csv rows; the last row of a run counts) for the
  runs of `sweep` × `seeds`; rows of other runs are ignored."""
  latest = latest_rows(rows)
  labels: dict[tuple[str, ...], None] = {}
  groups: dict[str | None, None] = {}
  cells = {}
  for point in sweep.points:
    label = tuple(format_value(point[key]) if key in point else "" for key in sweep.row_keys)
    group = format_value(point[sweep.columns]) if sweep.columns else None
    labels.setdefault(label)
    groups.setdefault(group)
    found = [latest.get(run_id(point, seed)) for seed in seeds]
    for metric in sweep.metrics:
      values = [_float(row.get(metric)) for row in found if row is not None and row.get("status") == OK]
      values = tuple(value for value in values if math.isfinite(value))
      attempted = sum(row is not None for row in found)
      cells[list(labels).index(label), list(groups).index(group), metric] = Cell(
          values, attempted - len(values), len(seeds))
  scale, decimals = {}, {}
  for metric in sweep.metrics:
    values = [v for (_, _, m), cell in cells.items() if m == metric for v in cell.values]
    fraction = bool(values) and all(0 <= v <= 1 for v in values)
    largest = max((abs(cell.mean) for (_, _, m), cell in cells.items() if m == metric and cell.values), default=0)
    scale[metric] = 100.0 if fraction else 1.0
    # One decimal for percentages; else three significant digits of the largest mean.
    decimals[metric] = 1 if fraction else (min(4, max(0, 2 - math.floor(math.log10(largest)))) if largest else 2)
  return Summary(sweep, tuple(seeds), tuple(labels), tuple(groups), cells, scale, decimals)


def _seed_text(seeds: Sequence[int]) -> str:
  return f"1 seed ({seeds[0]})" if len(seeds) == 1 else f"{len(seeds)} seeds ({seeds[0]}–{seeds[-1]})"


def _caption(summary: Summary, plus_minus: str, dash: str) -> str:
  sweep, seeds = summary.sweep, summary.seeds
  scaled = [sweep.metric_name(m) for m in sweep.metrics if summary.scale[m] != 1]
  lower = [sweep.metric_name(m) for m in sweep.lower_is_better]
  partial = f" (n=k): only k of {len(seeds)} seeds finished;" if len(seeds) > 1 else ""
  return (f"Mean {plus_minus} std over {_seed_text(seeds)} of the finished runs (std with ddof=1; {dash} for "
          f"a single run);{partial} failed: none did; pending: not run yet."
          + (f" {', '.join(scaled)}: ×100." if scaled else "")
          + " Best mean per column in bold" + (f" (lowest for {', '.join(lower)})." if lower else "."))


def _cell_text(summary: Summary, key: tuple[int, int, str], plus_minus: str, dash: str,
               bold: Callable[[str], str]) -> str:
  cell = summary.cells.get(key)
  if cell is None:
    return ""
  if not cell.values:
    return FAILED if cell.failed else "pending"
  metric = key[2]
  std = dash if len(cell.values) < 2 else summary.shown(cell.std, metric)
  text = f"{summary.shown(cell.mean, metric)} {plus_minus} {std}"
  text = bold(text) if summary.is_best(*key) else text
  return text + (f" (n={len(cell.values)})" if len(cell.values) < cell.expected else "")


def _group_title(summary: Summary, group: str | None) -> str:
  return f"{summary.sweep.columns}={group}"


def markdown_table(summary: Summary) -> str:
  """A GitHub markdown table (rows: the row keys' values; columns: groups × metrics) and its caption."""
  sweep = summary.sweep

  def escape(text: str) -> str:
    return text.replace("|", r"\|")

  keys = [(g, m) for g in range(len(summary.groups)) for m in sweep.metrics]
  header = [*sweep.row_keys, *(sweep.metric_name(m) if summary.groups == (None,)
                              else f"{_group_title(summary, summary.groups[g])} / {sweep.metric_name(m)}"
                              for g, m in keys)]
  lines = ["| " + " | ".join(map(escape, header)) + " |",
           "|" + "|".join([":--"] * len(sweep.row_keys) + ["--:"] * len(keys)) + "|"]
  for r, labels in enumerate(summary.rows):
    cells = [*labels, *(_cell_text(summary, (r, g, m), "±", "—", lambda t: f"**{t}**") for g, m in keys)]
    lines.append("| " + " | ".join(map(escape, cells)) + " |")
  return "\n".join(lines) + "\n\n" + _caption(summary, "±", "—") + "\n"


def _latex_escape(text: str) -> str:
  replacements = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
  return "".join(replacements.get(char, char) for char in text)


def latex_table(summary: Summary) -> str:
  """The markdown table's content as a booktabs `tabular`, the caption in a comment above it."""
  sweep = summary.sweep
  n_keys, n_metrics = len(sweep.row_keys), len(sweep.metrics)
  keys = [(g, m) for g in range(len(summary.groups)) for m in sweep.metrics]
  lines = [f"% {_caption(summary, '±', '—')}", r"% Needs \usepackage{booktabs}.",
           rf"\begin{{tabular}}{{{'l' * n_keys}{'r' * len(keys)}}}", r"\toprule"]
  if summary.groups != (None,):
    titles = [rf"\multicolumn{{{n_metrics}}}{{c}}{{{_latex_escape(_group_title(summary, group))}}}"
              for group in summary.groups]
    lines.append(" & ".join([""] * n_keys + titles) + r" \\")
    lines.append("".join(rf"\cmidrule(lr){{{n_keys + 1 + g * n_metrics}-{n_keys + (g + 1) * n_metrics}}}"
                         for g in range(len(summary.groups))))
  header = [*sweep.row_keys, *(sweep.metric_name(m) for _, m in keys)]
  lines += [" & ".join(map(_latex_escape, header)) + r" \\", r"\midrule"]
  for r, labels in enumerate(summary.rows):
    cells = [*map(_latex_escape, labels),
             *(_cell_text(summary, (r, g, m), r"$\pm$", "--", lambda t: rf"\textbf{{{t}}}") for g, m in keys)]
    lines.append(" & ".join(cells) + r" \\")
  lines += [r"\bottomrule", r"\end{tabular}"]
  return "\n".join(lines) + "\n"


def plot(summary: Summary, path: str) -> None:
  """Grouped bars (one subplot per metric, x: rows, one colour per column group), std error bars, as PNG."""
  from matplotlib.figure import Figure  # Not pyplot: no global backend to set, and imported only when plotting.

  sweep = summary.sweep
  n_rows, n_groups = len(summary.rows), len(summary.groups)
  width = max(3.5, 1.0 + n_rows * (0.3 + 0.35 * n_groups))
  figure = Figure(figsize=(width * len(sweep.metrics), 3.8))
  axes = figure.subplots(1, len(sweep.metrics), squeeze=False)[0]
  bar = 0.8 / n_groups
  tick_labels = [", ".join(labels) or "all" for labels in summary.rows]
  for ax, metric in zip(axes, sweep.metrics):
    scale = summary.scale[metric]
    for g, group in enumerate(summary.groups):
      cells = [summary.cells.get((r, g, metric)) for r in range(n_rows)]
      means = [cell.mean * scale if cell else math.nan for cell in cells]
      stds = [cell.std * scale if cell else math.nan for cell in cells]  # NaN (one run): no error bar.
      positions = [r + (g - (n_groups - 1) / 2) * bar for r in range(n_rows)]
      ax.bar(positions, means, bar, yerr=stds, capsize=3, label=group)
      for position, cell in zip(positions, cells):
        if cell and not cell.values:
          ax.text(position, 0, FAILED if cell.failed else "pending", rotation=90, ha="center", va="bottom",
                  fontsize="x-small")
    name = sweep.metric_name(metric)
    ax.set_title(name)
    ax.set_ylabel(name + (" (×100)" if scale != 1 else ""))
    ax.set_xlabel(", ".join(sweep.row_keys))
    long_labels = sum(map(len, tick_labels)) > 8 * n_rows
    ax.set_xticks(range(n_rows), tick_labels, rotation=25 if long_labels else 0,
                  ha="right" if long_labels else "center")
    ax.grid(axis="y", alpha=0.3)
  if summary.groups != (None,):
    axes[-1].legend(title=sweep.columns, fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
  figure.suptitle(f"Mean ± std over {_seed_text(summary.seeds)}", fontsize="medium")
  figure.tight_layout()
  figure.savefig(path, dpi=120, format="png", bbox_inches="tight")  # "tight" keeps the legend beside the axes.


def write_reports(sweep: Sweep, workdir: str, seeds: Sequence[int]) -> Summary:
  """Writes table.md, table.tex and plot.png from `<workdir>/results.csv` (each replaced whole)."""
  if not os.path.exists(os.path.join(workdir, RESULTS_FILE)):
    raise errors.UserError(f"{workdir} has no {RESULTS_FILE}: run the sweep first (without --report_only).")
  summary = summarize(sweep, read_rows(workdir), seeds)
  _write_text(os.path.join(workdir, "table.md"), markdown_table(summary))
  _write_text(os.path.join(workdir, "table.tex"), latex_table(summary))
  _replace(os.path.join(workdir, "plot.png"), lambda temporary: plot(summary, temporary))
  return summary
