"""Where a measured figure comes from: the commit of the code that ran, when it finished and on which machine.

Recorded when a figure is measured (each ablation run's row of results.csv, the benchmark's JSON line), never
reconstructed afterwards: a figure measured before these fields existed shows `NOT_RECORDED`. Speed depends on
the CPU model (docs/performance.md), so the machine is part of every figure's provenance. Nothing here imports
jax: the ablation runner calls it once per run.
"""
from __future__ import annotations

import datetime
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Sequence

KEYS = ("commit", "date", "machine")  # Recorded for every measurement; the benchmark adds "command".
UNKNOWN = "unknown"            # Recorded, but it could not be found out (e.g. code outside a git checkout).
NOT_RECORDED = "not recorded"  # Measured before provenance was recorded.
# The checkout that holds the mmjax package: the code a run executes (an editable install).
CODE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _git(root: str, *args: str) -> str:
  return subprocess.run(["git", "-C", root, *args], capture_output=True, text=True, timeout=60,
                        check=True).stdout.strip()


def commit(root: str = CODE_ROOT) -> str:
  """The git HEAD of the checkout at `root`, + "+dirty" if a tracked file differs from it; "unknown" when
  `root` is not the top of a git checkout (an installed wheel inside some other repository is not its code)."""
  try:
    if os.path.realpath(_git(root, "rev-parse", "--show-toplevel")) != os.path.realpath(root):
      return UNKNOWN
    head = _git(root, "rev-parse", "HEAD")
    changed = _git(root, "status", "--porcelain", "--untracked-files=no")
  except (OSError, subprocess.SubprocessError):
    return UNKNOWN
  return head + ("+dirty" if changed else "")


def utc_now() -> str:
  """The current UTC time to the second, ISO 8601: `2026-12-01T09:30:00Z`."""
  return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def cpu_model() -> str:
  """The CPU's model name: /proc/cpuinfo on Linux, sysctl on macOS, else what `platform` knows."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
          return " ".join(value.split())
  except OSError:
    pass
  if sys.platform == "darwin":
    try:
      return subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                            timeout=10, check=True).stdout.strip() or UNKNOWN
    except (OSError, subprocess.SubprocessError):
      pass
  return platform.processor() or platform.machine() or UNKNOWN


def cores() -> int:
  """The logical CPUs this process may run on (its affinity where the OS has one, e.g. a container's share)."""
  if hasattr(os, "sched_getaffinity"):
    return len(os.sched_getaffinity(0))
  return os.cpu_count() or 1


def machine() -> str:
  """`AMD EPYC 7B13, 2 cores`: what a speed figure needs to be compared."""
  return f"{cpu_model()}, {cores()} cores"


def command_line(module: str, argv: Sequence[str]) -> str:
  """How a script run as `python -m module` was invoked (`argv`: its sys.argv), as one shell line."""
  return shlex.join(["python", "-m", module, *argv[1:]])


def record(code_commit: str) -> dict[str, str]:
  """{"commit", "date", "machine"} of a measurement finishing now, whose code was at `code_commit` (taken with
  `commit()` when it started: the code a process runs is the code it imported, whatever is committed meanwhile)."""
  return {"commit": code_commit, "date": utc_now(), "machine": machine()}
