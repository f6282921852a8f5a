"""The results store of a sweep's workdir: `results.csv`, the run claims and the settings file.

Several `ablate` processes may share a workdir, so every change of `results.csv` and every claim
happens under one lock file, and files are replaced whole (written aside, then renamed into place):
a reader sees the old file or the new one, never half of one.
"""
from __future__ import annotations

import contextlib
import csv
import fcntl
import json
import os
import socket
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from mmjax import errors

RESULTS_FILE = "results.csv"
CLAIM_FILE = "ablate.claim"
SETTINGS_FILE = "ablate.json"
LOCK_FILE = ".results.lock"
OK, FAILED = "ok", "failed"  # A row's status.
Row = Mapping[str, Any]


@contextlib.contextmanager
def locked(workdir: str) -> Iterator[None]:
  """Holds the workdir's lock: every change of results.csv and every claim happens under it."""
  with open(os.path.join(workdir, LOCK_FILE), "a") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)


def replace_file(path: str, write: Callable[[str], None]) -> None:
  """Writes `path` through a temporary file that `write(temporary_path)` fills, so a reader sees
  the old file or the new one."""
  temporary = f"{path}.tmp{os.getpid()}"
  write(temporary)
  os.replace(temporary, path)


def write_text(path: str, text: str) -> None:
  """Replaces `path` by `text` (see `replace_file`)."""
  def write(temporary: str) -> None:
    with open(temporary, "w") as f:
      f.write(text)
  replace_file(path, write)


def read_rows(workdir: str) -> list[dict[str, str]]:
  """The rows of `<workdir>/results.csv` in the order they were added ([] if it does not exist)."""
  path = os.path.join(workdir, RESULTS_FILE)
  if not os.path.exists(path):
    return []
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


def latest_rows(rows: Iterable[Row]) -> dict[str, Row]:
  """run_id → the last row of that run: after a failure and a retry, the retry counts."""
  return {row["run_id"]: row for row in rows}


def append_row(workdir: str, row: Row) -> None:
  """Adds a row to results.csv (call under `locked`); new columns widen the header."""
  rows = read_rows(workdir)
  header = list(rows[0].keys()) if rows else []
  header += [key for key in row if key not in header]

  def write(temporary: str) -> None:
    with open(temporary, "w", newline="") as f:
      writer = csv.DictWriter(f, header, restval="", lineterminator="\n")
      writer.writeheader()
      writer.writerows([*rows, row])
  replace_file(os.path.join(workdir, RESULTS_FILE), write)


def process_start(pid: int) -> str | None:
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
  return claim.get("start") is None or process_start(claim["pid"]) == claim["start"]


def claim(run_dir: str) -> bool:
  """Claims the run in `run_dir` for this process (call under `locked`) by creating its claim file
  (pid, host, process start); False if a live process holds it. A dead process's claim is taken over."""
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
    json.dump({"pid": os.getpid(), "host": socket.gethostname(), "start": process_start(os.getpid())}, f)
  return True


def release(run_dir: str) -> None:
  """Removes this process's claim of the run in `run_dir`."""
  os.remove(os.path.join(run_dir, CLAIM_FILE))


def _settings(config: str, overrides: Mapping[str, str]) -> dict[str, Any]:
  config_path, _, arg = config.partition(":")
  return {"config": os.path.normpath(os.path.abspath(config_path)), "config_args": arg,
          "overrides": dict(overrides)}


def read_settings(workdir: str) -> dict[str, Any]:
  """The workdir's `ablate.json` ({} if it has none)."""
  path = os.path.join(workdir, SETTINGS_FILE)
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    return json.load(f)


def _write_settings(workdir: str, settings: Mapping[str, Any]) -> None:
  write_text(os.path.join(workdir, SETTINGS_FILE), json.dumps(settings, indent=1, sort_keys=True) + "\n")


def check_settings(workdir: str, config: str, overrides: Mapping[str, str]) -> None:
  """Records what the runs are trained with; a restart with other settings would mix
  incomparable runs in one table, so it is an error."""
  settings = _settings(config, overrides)
  with locked(workdir):
    stored = read_settings(workdir)
    if not stored:
      _write_settings(workdir, settings)
      return
  stored = {key: stored.get(key) for key in settings}  # Not the commands recorded beside them.
  if stored != settings:
    raise errors.ConfigError(
        f"{workdir} holds runs trained with {json.dumps(stored)}, not {json.dumps(settings)}: use a new "
        f"--workdir, or the same --config and --override flags (or delete {os.path.join(workdir, SETTINGS_FILE)} "
        "if the change is harmless).")


def record_command(workdir: str, sweep: str, seeds: Iterable[int], command: str) -> None:
  """Adds {"sweep", "seeds", "command"} to the "commands" of ablate.json unless it is there: the command
  lines that ran sweeps in this workdir, for the provenance of the tables (after `check_settings`)."""
  entry = {"sweep": sweep, "seeds": list(seeds), "command": command}
  with locked(workdir):
    settings = read_settings(workdir)
    if entry not in settings.setdefault("commands", []):
      settings["commands"].append(entry)
      _write_settings(workdir, settings)
