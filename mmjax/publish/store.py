"""The results directory of one published experiment, `experiments/results/<name>/`, and the provenance text
that ends each of its tables.

A directory holds the measurements as they were recorded (`results.csv` of a sweep, `benchmark.jsonl` of a
benchmark), `summary.json` (what was measured, by which command, and the statistics; derived from the
measurements, except the inputs it names) and `table.md` (the Markdown that README and docs include). Only the
measurements and the inputs are facts; summary.json's statistics and table.md can always be made again from them,
which is what `experiments.report --sync` does and `--sync --check` verifies.
"""
from __future__ import annotations

import json
import math
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from mmjax import errors, provenance
from mmjax.ablation.results import write_text

RESULTS_DIR = os.path.join("experiments", "results")  # Below the repository root.
SUMMARY_FILE = "summary.json"
TABLE_FILE = "table.md"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def check_name(name: str) -> str:
  """`name` if it can name a results directory and a README marker, else a one-line InputError."""
  if not _NAME.fullmatch(name or ""):
    raise errors.InputError(f"--name={name!r}: an experiment's name is letters, digits, '_', '.' and '-', "
                            "e.g. --name=vqa_fusion_400.")
  return name


def results_dir(root: str, name: str) -> str:
  """`<root>/experiments/results/<name>`."""
  return os.path.join(root, RESULTS_DIR, check_name(name))


def relative_to(path: str, root: str) -> str:
  """`path` relative to `root` when inside it (how a repository file is named in results), else as it is."""
  relative = os.path.relpath(os.path.abspath(path), os.path.abspath(root))
  return path if relative.startswith(os.pardir) else relative


def finite_or_none(value: float) -> float | None:
  """JSON has no NaN: a statistic that does not exist (the std of one run) is null."""
  return value if math.isfinite(value) else None


def json_text(value: Any) -> str:
  """How every summary.json is written, so that regenerating one gives the same bytes."""
  return json.dumps(value, indent=1, ensure_ascii=False, allow_nan=False) + "\n"


def read_json(path: str) -> Any:
  with open(path) as f:
    return json.load(f)


def write_files(directory: str, files: Mapping[str, str]) -> None:
  """Writes each file of `files` ({name: text}) into `directory`, each replaced whole."""
  os.makedirs(directory, exist_ok=True)
  for name, text in files.items():
    write_text(os.path.join(directory, name), text)


def _recorded(record: Mapping[str, Any], key: str) -> str:
  return str(record.get(key) or provenance.NOT_RECORDED)


def provenance_summary(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
  """What the measurements' provenance fields say: each commit and machine seen with its number of runs (in
  first-seen order; "not recorded" for measurements made before provenance was recorded), the first and last
  date and how many runs have no date."""
  records = list(records)
  dates = sorted(str(record["date"]) for record in records if record.get("date"))
  return {"commits": dict(Counter(_recorded(record, "commit") for record in records)),
          "machines": dict(Counter(_recorded(record, "machine") for record in records)),
          "dates": {"first": dates[0] if dates else None, "last": dates[-1] if dates else None,
                    "not_recorded": len(records) - len(dates)}}


def _short_commit(commit: str) -> str:
  head, plus, rest = commit.partition("+")
  return f"`{head[:12]}{plus}{rest}`" if re.fullmatch(r"[0-9a-f]{40}", head) else commit


def _counted(counts: Mapping[str, int], show=lambda value: value) -> str:
  if len(counts) == 1:
    return show(next(iter(counts)))
  return ", ".join(f"{show(value)} ({n} run{'s' * (n != 1)})" for value, n in counts.items())


def date_text(iso: str) -> str:
  """An ISO date to the minute, as tables show it: 2026-11-30 22:51."""
  return iso.replace("T", " ")[:16]


def provenance_text(summary: Mapping[str, Any]) -> str:
  """`commit: ...; date: ...; machine: ...` of a `provenance_summary`."""
  dates = summary["dates"]
  if dates["first"] is None:
    date = provenance.NOT_RECORDED
  else:
    date = date_text(dates["first"]) + (f" – {date_text(dates['last'])}" if dates["last"] != dates["first"] else "")
    date += " UTC" + (f" ({provenance.NOT_RECORDED} for {dates['not_recorded']} runs)" if dates["not_recorded"]
                      else "")
  return (f"commit: {_counted(summary['commits'], _short_commit)}; date: {date}; "
          f"machine: {_counted(summary['machines'])}")


def commands_text(commands: Sequence[str]) -> str:
  """The command lines as inline code, joined by "; "."""
  return "; ".join(f"`{command}`" for command in commands)
