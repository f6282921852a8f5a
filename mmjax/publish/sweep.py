"""Publishes an ablation sweep: its rows of results.csv, their summary and the runner's table with its provenance.

The inputs (the sweep's definition, the seeds, the config and overrides, the command lines) are read from the
sweep's workdir and its config file once, when the sweep is published, and stored in summary.json; everything
else in summary.json and table.md is computed from them and results.csv alone, by the same code as the runner's
own tables (mmjax.ablation.report), so `render` makes them again from the committed files.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import os
from collections.abc import Mapping, Sequence
from typing import Any

from mmjax import ablation, errors, provenance
from mmjax.ablation import results
from mmjax.ablation.report import ok_values
from mmjax.publish import store

ROWS_FILE = results.RESULTS_FILE  # The published rows keep the runner's file name: results.csv.


def _sweep_fields(sweep: ablation.Sweep) -> dict[str, Any]:
  """The sweep as JSON data that `ablation.Sweep(**fields)` makes again."""
  fields = dataclasses.asdict(sweep)
  return {key: list(value) if isinstance(value, tuple) else value for key, value in fields.items()}


def _seeds_in_rows(sweep: ablation.Sweep, rows: Sequence[Mapping[str, str]]) -> list[int]:
  """The seeds of the rows that are runs of `sweep`: the seeds of a sweep whose command was not recorded."""
  seeds = {int(row["seed"]) for row in rows if str(row.get("seed", "")).isdigit()}
  run_ids = {row["run_id"] for row in rows}
  return sorted(seed for seed in seeds if any(run.run_id in run_ids for run in ablation.plan(sweep, [seed])))


def sweep_inputs(sweep_dir: str, root: str, sweep_name: str | None = None) -> dict[str, Any]:
  """What a sweep's table is made from besides its rows, read from the sweep's workdir (`ablate.json`, whose
  "commands" name the sweep and its seeds when they were recorded) and its config file's SWEEPS."""
  settings = results.read_settings(sweep_dir)
  if not settings or not os.path.exists(os.path.join(sweep_dir, results.RESULTS_FILE)):
    raise errors.InputError(f"--sweep_dir={sweep_dir} has no {results.SETTINGS_FILE} and {results.RESULTS_FILE}: "
                            "give the --workdir of a python -m experiments.ablate run.")
  commands = settings.get("commands", [])
  names = list(dict.fromkeys(entry["sweep"] for entry in commands))
  if sweep_name is None:
    if len(names) != 1:
      recorded = f"ran the sweeps {names}" if names else "does not record its sweep (run before it was recorded)"
      raise errors.InputError(f"{os.path.join(sweep_dir, results.SETTINGS_FILE)} {recorded}: name it with "
                              "--sweep=<a key of the config's SWEEPS>.")
    sweep_name = names[0]
  sweep = ablation.load_sweep(settings["config"], sweep_name)
  entries = [entry for entry in commands if entry["sweep"] == sweep_name]
  seeds = sorted({seed for entry in entries for seed in entry["seeds"]})
  if not seeds:
    seeds = _seeds_in_rows(sweep, results.read_rows(sweep_dir))
  return {"workdir": os.path.abspath(sweep_dir), "config": store.relative_to(settings["config"], root),
          "config_args": settings["config_args"], "overrides": settings["overrides"], "sweep_name": sweep_name,
          "sweep": _sweep_fields(sweep), "seeds": seeds, "commands": [entry["command"] for entry in entries]}


def _statistics(values: Sequence[float]) -> dict[str, Any]:
  cell = ablation.Cell(tuple(values), failed=0, expected=len(values))
  return {"mean": store.finite_or_none(cell.mean), "std": store.finite_or_none(cell.std), "n": len(values),
          "values": list(values)}


def _planned_rows(inputs: Mapping[str, Any], rows: Sequence[Mapping[str, str]]):
  """(sweep, seeds, {run_id: latest row} of the sweep's planned runs)."""
  sweep, seeds = ablation.Sweep(**inputs["sweep"]), inputs["seeds"]
  latest = results.latest_rows(rows)
  planned = {run.run_id: latest[run.run_id] for run in ablation.plan(sweep, seeds) if run.run_id in latest}
  return sweep, seeds, planned


def summarize(name: str, inputs: Mapping[str, Any], rows: Sequence[Mapping[str, str]]) -> dict[str, Any]:
  """summary.json of a sweep: the inputs; per point and metric (and wall seconds) the mean, std (ddof=1), n
  and values of its ok runs, in seed order; the runs' status counts and provenance. The last row of a run
  counts, as in the runner's tables."""
  sweep, seeds, planned = _planned_rows(inputs, rows)
  points = []
  for point in sweep.points:
    found = [planned.get(ablation.run_id(point, seed)) for seed in seeds]
    ok = sum(row is not None and row["status"] == results.OK for row in found)
    metrics = (*sweep.metrics, *(() if "wall_s" in sweep.metrics else ("wall_s",)))
    points.append({"point": dict(point),
                   "runs": {"ok": ok, "failed": len(found) - found.count(None) - ok, "pending": found.count(None)},
                   "metrics": {metric: _statistics(ok_values(found, metric)) for metric in metrics}})
  statuses = [row["status"] for row in planned.values()]
  return {"kind": "sweep", "name": name, "inputs": dict(inputs),
          "runs": {"planned": len(sweep.points) * len(seeds), "ok": statuses.count(results.OK),
                   "failed": statuses.count(results.FAILED)},
          "points": points, "provenance": store.provenance_summary(planned.values())}


def _measured_by(summary: Mapping[str, Any]) -> str:
  inputs = summary["inputs"]
  if inputs["commands"]:
    return f"Measured by {store.commands_text(inputs['commands'])}"
  settings = [f"`{inputs['config']}" + (f":{inputs['config_args']}`" if inputs["config_args"] else "`"),
              f"sweep `{inputs['sweep_name']}`",
              *(f"`--override={key}={value}`" for key, value in inputs["overrides"].items())]
  return f"Measured by a command {provenance.NOT_RECORDED} (its settings: {', '.join(settings)})"


def provenance_line(summary: Mapping[str, Any]) -> str:
  """The line under a sweep's table: the command, how many runs finished and their wall times, the commit(s),
  date range and machine(s) of the runs in the table."""
  walls = [value for point in summary["points"] for value in point["metrics"]["wall_s"]["values"]]
  runs = summary["runs"]
  done = f"{runs['ok']} of {runs['planned']} runs ok" + (f", {runs['failed']} failed" if runs["failed"] else "")
  if walls:
    done += f", {min(walls):.0f}–{max(walls):.0f} s each" if len(walls) > 1 else f", {walls[0]:.0f} s"
  return f"{_measured_by(summary)}: {done}; {store.provenance_text(summary['provenance'])}.\n"


def table(summary: Mapping[str, Any], rows: Sequence[Mapping[str, str]]) -> str:
  """table.md: the runner's Markdown table of the rows (mmjax.ablation.report), then the provenance line."""
  sweep, seeds, _ = _planned_rows(summary["inputs"], rows)
  return ablation.markdown_table(ablation.summarize(sweep, rows, seeds)) + "\n" + provenance_line(summary)


def rows_csv(rows: Sequence[Mapping[str, str]]) -> str:
  """Rows as the runner writes results.csv (mmjax.ablation.results.append_row)."""
  text = io.StringIO()
  writer = csv.DictWriter(text, list(rows[0]), restval="", lineterminator="\n")
  writer.writeheader()
  writer.writerows(rows)
  return text.getvalue()


def render(directory: str) -> dict[str, str]:
  """{file: text} of summary.json and table.md, made from the directory's results.csv and summary.json inputs."""
  inputs = store.read_json(os.path.join(directory, store.SUMMARY_FILE))["inputs"]
  if not os.path.exists(os.path.join(directory, ROWS_FILE)):
    raise FileNotFoundError(f"no {ROWS_FILE} beside it")  # Else every run would read as pending.
  rows = results.read_rows(directory)
  summary = summarize(os.path.basename(os.path.normpath(directory)), inputs, rows)
  return {store.SUMMARY_FILE: store.json_text(summary), store.TABLE_FILE: table(summary, rows)}


def publish(sweep_dir: str, name: str, root: str, sweep_name: str | None = None) -> str:
  """Writes `<root>/experiments/results/<name>/` from the sweep in `sweep_dir`: the rows of the sweep's runs
  (every attempt) as results.csv, summary.json and table.md. Returns the directory."""
  directory = store.results_dir(root, name)
  inputs = sweep_inputs(sweep_dir, root, sweep_name)
  sweep = ablation.Sweep(**inputs["sweep"])
  run_ids = {run.run_id for run in ablation.plan(sweep, inputs["seeds"])}
  rows = [row for row in results.read_rows(sweep_dir) if row["run_id"] in run_ids]
  if not rows:
    raise errors.InputError(f"{os.path.join(sweep_dir, results.RESULTS_FILE)} has no run of the sweep "
                            f"{inputs['sweep_name']!r} (seeds {inputs['seeds']}): is --sweep right?")
  summary = summarize(name, inputs, rows)
  store.write_files(directory, {ROWS_FILE: rows_csv(rows), store.SUMMARY_FILE: store.json_text(summary),
                                store.TABLE_FILE: table(summary, rows)})
  return directory
