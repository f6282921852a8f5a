"""A table a script measured in one run (e.g. `experiments.classify_photos --json`), published as it printed it:
its JSON line → `table.jsonl`, summary.json and table.md.

For outputs that are a table already and have no statistics to compute: the script's JSON line holds the columns
and rows as the script formatted them, so the published table is the script's own printout, with its provenance.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from mmjax import errors
from mmjax.publish import store

RUNS_FILE = "table.jsonl"


def record(columns: Sequence[str], rows: Sequence[Sequence[str]], note: str = "") -> dict[str, Any]:
  """The "table" part of a script's JSON line: column titles, rows of formatted cells, an optional note."""
  if any(len(row) != len(columns) for row in rows):
    raise ValueError(f"Every row needs {len(columns)} cells, one per column {list(columns)}.")
  return {"columns": list(columns), "rows": [list(row) for row in rows], "note": note}


def read_run(path: str) -> dict[str, Any]:
  """The last JSON line with a "table" in a file of a script's output (other lines are skipped)."""
  try:
    with open(path) as f:
      lines = [(number, line) for number, line in enumerate(f, 1) if line.startswith("{")]
  except OSError as e:
    raise errors.InputError(f"{path}: {e.strerror}.") from None
  for number, line in reversed(lines):
    try:
      run = json.loads(line)
    except json.JSONDecodeError as e:
      raise errors.InputError(f"{path}:{number} is not a JSON line ({e.msg}).") from None
    if isinstance(run.get("table"), Mapping):
      return run
  raise errors.InputError(f"{path} holds no JSON line with a \"table\": save the output of a script run with --json "
                          "(e.g. python -m experiments.classify_photos --json).")


def markdown(run: Mapping[str, Any]) -> str:
  """table.md: the script's table, its note, then the command and the provenance."""
  table = run["table"]
  lines = ["| " + " | ".join(table["columns"]) + " |", "|" + ":--|" * len(table["columns"]),
           *("| " + " | ".join(str(cell) for cell in row) + " |" for row in table["rows"])]
  note = f"{table['note']} " if table.get("note") else ""
  summary = store.provenance_summary([run])
  return "\n".join(lines) + f"\n\n{note}Measured by {store.commands_text([run['command']])}; " \
      f"{store.provenance_text(summary)}.\n"


def render(directory: str) -> dict[str, str]:
  """{file: text} of summary.json and table.md, made from the directory's table.jsonl."""
  run = read_run(os.path.join(directory, RUNS_FILE))
  summary = {"kind": "table", "name": os.path.basename(os.path.normpath(directory)), "command": run["command"],
             "provenance": store.provenance_summary([run])}
  return {store.SUMMARY_FILE: store.json_text(summary), store.TABLE_FILE: markdown(run)}


def publish(json_path: str, name: str, root: str) -> str:
  """Writes `<root>/experiments/results/<name>/` from the script output in `json_path` (its last table line
  replaces what was published before) and returns the directory."""
  directory = store.results_dir(root, name)
  store.write_files(directory, {RUNS_FILE: json.dumps(read_run(json_path), ensure_ascii=False) + "\n"})
  store.write_files(directory, render(directory))
  return directory
