"""Runs a sweep: one `python -m experiments.train` subprocess per run, each result appended to results.csv.

A run's result is read from the file the run writes when it completes (`final_metrics.json` in its
workdir), never from its output: the output only goes to `ablate.log` for people, and to the error
message of a failed run.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from mmjax import errors, provenance
from mmjax.ablation import results
from mmjax.ablation.report import write_reports
from mmjax.ablation.results import FAILED, OK, RESULTS_FILE
from mmjax.ablation.sweep import RESERVED_KEYS, Run, Sweep, format_value, plan

RUN_LOG = "ablate.log"
# Must equal FINAL_METRICS_FILE of mmjax/trainer/metric_writer.py, the file experiments.train writes last when a
# run completes. Not imported from there: that would import jax into every ablate process.
FINAL_METRICS_FILE = "final_metrics.json"
REPORT_EVERY_S = 60  # Interim tables and plot while a sweep runs, at most this often (plotting takes ~0.5 s).
TRAIN_COMMAND = (sys.executable, "-m", "experiments.train")


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


def _execute(command: Sequence[str], run_dir: str) -> tuple[int, str]:
  """Runs `command` in the caller's environment and directory, writing its stdout and stderr to
  `run_dir`/ablate.log as they come; returns (exit code, stderr). Interrupted, it asks the run to
  save a checkpoint and stop first."""
  with open(os.path.join(run_dir, RUN_LOG), "ab") as log:
    log.write(f"$ {shlex.join(command)}\n".encode())
    log.flush()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stderr: list[bytes] = []
    log_lock = threading.Lock()

    def tee(stream, chunks: list[bytes] | None) -> None:
      for chunk in iter(lambda: stream.read1(1 << 16), b""):
        if chunks is not None:
          chunks.append(chunk)
        with log_lock:
          log.write(chunk)
          log.flush()

    threads = [threading.Thread(target=tee, args=(process.stdout, None), daemon=True),
               threading.Thread(target=tee, args=(process.stderr, stderr), daemon=True)]
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
  return returncode, b"".join(stderr).decode(errors="replace")


def read_final_metrics(run_dir: str) -> dict[str, Any] | None:
  """The run's `final_metrics.json` ({"step": ..., metric: value, ...}), or None if it did not finish."""
  try:
    with open(os.path.join(run_dir, FINAL_METRICS_FILE)) as f:
      return json.load(f)
  except FileNotFoundError:
    return None


def result_row(sweep: Sweep, run: Run, returncode: int, stderr: str, final_metrics: Mapping[str, Any] | None,
               wall_s: float, measured: Mapping[str, str] = {}) -> dict[str, Any]:
  """The results.csv row of a finished subprocess: ok only if it exited 0 and wrote its final metrics
  (`final_metrics`, None if it did not) with every sweep metric finite (a metric that is a column of the row
  itself, such as "wall_s", is always there). `measured`: the run's provenance (mmjax.provenance.record)."""
  scalars = {key: value for key, value in (final_metrics or {}).items()
             if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool)}
  error = ""
  if returncode != 0:
    error = error_message(stderr, returncode)
  elif final_metrics is None:
    error = (f"exited 0 without writing {FINAL_METRICS_FILE}, so it stopped before finishing (stopped on a "
             "signal?); rerun to resume it.")
  else:
    missing = [m for m in sweep.metrics if m not in RESERVED_KEYS and not math.isfinite(scalars.get(m, math.nan))]
    if missing:
      error = f"no finite final value of {missing}; the run reported {sorted(scalars)}."
  step = (final_metrics or {}).get("step", "")
  row = {"run_id": run.run_id, **{key: format_value(value) for key, value in run.point.items()},
         "seed": run.seed, "status": FAILED if error else OK, "error": error, "wall_s": f"{wall_s:.1f}",
         "step": step, **{key: measured.get(key, "") for key in provenance.KEYS}}
  ordered = [m for m in sweep.metrics if m in scalars] + sorted(set(scalars) - set(sweep.metrics))
  row.update({key: repr(float(scalars[key])) for key in ordered})
  return row


def run_sweep(sweep: Sweep, config: str, workdir: str, seeds: Sequence[int], overrides: Mapping[str, str] = {},
              retry_failed: bool = True, train: Sequence[str] = TRAIN_COMMAND,
              progress: Callable[[str], None] = lambda line: print(line, flush=True),
              sweep_name: str = "", command: str = "") -> list[dict[str, str]]:
  """Trains every run of `sweep` × `seeds` not yet finished in `workdir`, one subprocess each, then
  writes the reports; returns the latest row of every planned run (missing if another process
  still holds it). `config` is "file.py[:args]"; `train` the command that trains (tests fake it);
  `command`, the command line that runs the sweep `sweep_name`, is recorded in ablate.json."""
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  results.check_settings(workdir, config, overrides)
  if command:
    results.record_command(workdir, sweep_name, seeds, command)
  runs = plan(sweep, seeds)
  rows = results.read_rows(workdir)
  attempts = Counter(row["run_id"] for row in rows)
  latest = results.latest_rows(rows)
  status = {run.run_id: latest.get(run.run_id, {}).get("status") for run in runs}
  todo = [run for run in runs if status[run.run_id] != OK and (retry_failed or status[run.run_id] != FAILED)]
  finished, failed = sum(s == OK for s in status.values()), sum(s == FAILED for s in status.values())
  progress(f"{len(runs)} runs ({len(sweep.points)} points × {len(seeds)} seeds): {finished} finished, "
           f"{failed} failed{'' if retry_failed else ' (not retried)'}, {len(todo)} to do.")
  has_results = lambda: os.path.exists(os.path.join(workdir, RESULTS_FILE))
  reported = time.monotonic()
  with _sigterm_raises():
    for run in todo:
      position = f"[{runs.index(run) + 1}/{len(runs)}] {run.label}"
      _train_one(sweep, config, workdir, position, run, attempts[run.run_id], overrides, train, progress)
      if time.monotonic() - reported > REPORT_EVERY_S and has_results():
        write_reports(sweep, workdir, seeds)  # The tables fill in while a long sweep goes on.
        reported = time.monotonic()
  if has_results():  # Not yet if another process holds every run.
    write_reports(sweep, workdir, seeds)
  latest = results.latest_rows(results.read_rows(workdir))
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


def _train_one(sweep: Sweep, config: str, workdir: str, position: str, run: Run, attempts: int,
               overrides: Mapping[str, str], train: Sequence[str], progress: Callable[[str], None]) -> None:
  """Claims, trains and records one run, unless another process has run it (`attempts`: its rows
  in results.csv when this process planned) or is running it."""
  run_dir = os.path.join(workdir, "runs", run.run_id)
  os.makedirs(run_dir, exist_ok=True)
  with results.locked(workdir):
    if Counter(row["run_id"] for row in results.read_rows(workdir))[run.run_id] != attempts:
      progress(f"{position}: done by another process.")
      return
    if not results.claim(run_dir):
      progress(f"{position}: running in another process.")
      return
  try:
    # An earlier attempt's final metrics (one whose metrics were not finite, say) are not this attempt's.
    with contextlib.suppress(FileNotFoundError):
      os.remove(os.path.join(run_dir, FINAL_METRICS_FILE))
    code_commit, start = provenance.commit(), time.monotonic()
    returncode, stderr = _execute(train_command(config, run, run_dir, overrides, train), run_dir)
    final_metrics = read_final_metrics(run_dir) if returncode == 0 else None
    row = result_row(sweep, run, returncode, stderr, final_metrics, time.monotonic() - start,
                     provenance.record(code_commit))
    with results.locked(workdir):
      results.append_row(workdir, row)
  finally:
    results.release(run_dir)
  if row["status"] == OK:
    values = ", ".join(f"{metric}={float(row[metric]):.4g}" for metric in sweep.metrics)
    progress(f"{position}: ok in {float(row['wall_s']):.0f} s, {values}")
  else:
    progress(f"{position}: failed in {float(row['wall_s']):.0f} s: {row['error']} "
             f"(log: {os.path.join(run_dir, RUN_LOG)})")
