"""Published wall times of README's two commands, as `experiments.time_readme` measured them on clean clones:
the JSON lines of its runs → `timings.jsonl` (the lines as printed), summary.json and table.md.

README promises how long its commands take on this project's machine; the promise is a table of runs like any
other measured figure, so a reader sees each run's date, commit, how busy the machine was, and the test count.
"""
from __future__ import annotations

import json
import os
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from mmjax import errors
from mmjax.publish import store

RUNS_FILE = "timings.jsonl"
COMMANDS = ("main", "test")  # README's first and second command.


def _seconds(value: float | None) -> str:
  return "—" if value is None else f"{value:,.0f}"


def _status(run: Mapping[str, Any]) -> str:
  return "ok" if run["exit_code"] == 0 else f"failed (exit {run['exit_code']})"


def _run_row(run: Mapping[str, Any], current: bool) -> list[str]:
  tests = "—" if run.get("tests_passed") is None else f"{run['tests_passed']:,}"
  return [store.date_text(run["date"]), f"`{run['commit'][:12]}`", _seconds(run["wall_s"]),
          _seconds(run.get("pytest_s")), tests, _seconds(run.get("user_s")), f"{run['load_before']:.1f}",
          _status(run) + ("" if current else ", earlier command")]


def table(summary: Mapping[str, Any], runs: Sequence[Mapping[str, Any]]) -> str:
  """table.md: a row per run (oldest first); the latest run and the median wall time of the passing runs of README's
  current command (rows of an earlier form of the command stay as history, marked), and provenance."""
  header = ["date (UTC)", "commit", "wall s", "pytest s", "tests passed", "user CPU s", "load before", "result"]
  lines = ["| " + " | ".join(header) + " |", "|:--|:--|" + "--:|" * 5 + ":--|",
           *("| " + " | ".join(_run_row(run, current=run["command"] == summary["command"])) + " |" for run in runs)]
  latest, median, earlier = runs[-1], summary["median_wall_s"], summary["runs"] - summary["runs_of_command"]
  return ("\n".join(lines) + "\n\n"
          + f"Latest run: {latest['wall_s']:,.0f} s ({_status(latest)}) at `{latest['commit'][:12]}`. "
          + (f"Median wall time of the {summary['passed']} runs of this command that passed: {median:,.0f} s. "
             if median else "No run of this command passed. ")
          + (f"Rows marked \"earlier command\" ({earlier}) ran an earlier form of it and are not counted. "
             if earlier else "")
          + f"Each run: `{summary['command']}` in a fresh clone and virtualenv (the package caches as the machine "
          "had them); load before = the 1-minute load average when it started (2 = both cores busy). Measured by "
          f"{store.commands_text(summary['measured_by'])}; {store.provenance_text(summary['provenance'])}.\n")


def read_runs(path: str) -> list[dict[str, Any]]:
  """The runs of one README command in a file of `experiments.time_readme` output (its lines that start with "{")."""
  try:
    with open(path) as f:
      lines = [(number, line) for number, line in enumerate(f, 1) if line.startswith("{")]
  except OSError as e:
    raise errors.InputError(f"{path}: {e.strerror}.") from None
  runs = []
  for number, line in lines:
    try:
      runs.append(json.loads(line))
    except json.JSONDecodeError as e:
      raise errors.InputError(f"{path}:{number} is not a JSON line of experiments.time_readme ({e.msg}).") from None
  which = sorted({run.get("readme_command") for run in runs}, key=str)
  if len(which) != 1 or which[0] not in COMMANDS:
    raise errors.InputError(f"{path} holds runs of README commands {which}: publish the runs of one command "
                            f"({' or '.join(COMMANDS)}) of python -m experiments.time_readme per file.")
  return runs


def summarize(name: str, runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
  """The median counts the passing runs of README's current command (the latest run's) only: a faster install or
  a trimmed suite must not be averaged with the runs before it."""
  command = runs[-1]["command"]
  of_command = [run for run in runs if run["command"] == command]
  passed = [run["wall_s"] for run in of_command if run["exit_code"] == 0]
  return {"kind": "timing", "name": name, "readme_command": runs[0]["readme_command"],
          "command": command, "runs": len(runs), "runs_of_command": len(of_command), "passed": len(passed),
          "median_wall_s": statistics.median(passed) if passed else None, "latest_wall_s": runs[-1]["wall_s"],
          "measured_by": list(dict.fromkeys(run["measured_by"] for run in runs)),
          "provenance": store.provenance_summary(runs)}


def render(directory: str) -> dict[str, str]:
  """{file: text} of summary.json and table.md, made from the directory's timings.jsonl."""
  runs = read_runs(os.path.join(directory, RUNS_FILE))
  summary = summarize(os.path.basename(os.path.normpath(directory)), runs)
  return {store.SUMMARY_FILE: store.json_text(summary), store.TABLE_FILE: table(summary, runs)}


def publish(json_path: str, name: str, root: str) -> str:
  """Adds the runs in `json_path` to `<root>/experiments/results/<name>/timings.jsonl` (a README command is timed
  again at every change that matters, so runs accumulate) and writes summary.json and table.md."""
  directory = store.results_dir(root, name)
  new = read_runs(json_path)
  path = os.path.join(directory, RUNS_FILE)
  old = read_runs(path) if os.path.exists(path) else []
  if old and old[0]["readme_command"] != new[0]["readme_command"]:
    raise errors.InputError(f"{path} times README's {old[0]['readme_command']} command, {json_path} its "
                            f"{new[0]['readme_command']} command: publish them under different names.")
  runs = old + [run for run in new if run not in old]
  store.write_files(directory, {RUNS_FILE: "".join(json.dumps(run) + "\n" for run in runs)})
  store.write_files(directory, render(directory))
  return directory
