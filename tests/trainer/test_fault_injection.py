"""Fault injection through the real train script: SIGKILL at many points, corrupt checkpoints,
a diverging run. Every interrupted run must end bitwise equal to the uninterrupted one."""
import os
import re
import shutil
import signal
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from mmjax.trainer import faults
from tests.helpers import CORRUPTIONS, REPO, read_metrics

# One worker: the reference run is shared by every test here.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("fault_injection")]

TOTAL_STEPS = 24
# Train metrics every 4 steps, retrieval on `test` every 8 (the other evals only at the end).
# Evals on part of their splits: every row of metrics.jsonl is still compared, with less to evaluate per restart.
FLAGS = (f"--config.total_steps={TOTAL_STEPS}", "--config.log_every_steps=4", "--config.evals.test.every_steps=8",
         "--config.evals.heldout.every_steps=0", "--config.evals.zeroshot_colour.every_steps=0",
         "--config.evals.test.split=test[:128]", "--config.evals.heldout.split=heldout[:128]",
         "--config.evals.zeroshot_colour.split=test[:256]")
# The reference keeps checkpoints 6, 12, 18 and 24 for the corruption test. Checkpointing
# never changes what is computed, so the runs below may checkpoint differently.
REFERENCE_FLAGS = ("--config.checkpoint_every_steps=6", "--config.keep_checkpoints=4")
# Killed runs keep a single checkpoint: a kill during a save must still leave the previous one.
KILLED_FLAGS = ("--config.checkpoint_every_steps=8", "--config.keep_checkpoints=1")
# The interruptions, in order: SIGKILL at a named point of the loop (see mmjax.trainer.faults: during the first
# async save, so no checkpoint is complete yet; between evaluators; during the final save) and SIGTERM
# (preemption) mid-step between checkpoints. Each start resumes where the previous one left off. (A SIGKILL
# mid-step before any save, the case the first one already covers, was dropped to keep the suite in its budget.)
INTERRUPTIONS = ("save:8", "eval:16", "step:13:SIGTERM", "save:24")


def _start(data_dir: str, workdir: str, *flags: str, kill_at: str | None = None) -> subprocess.Popen:
  """Starts the train script (later flags override earlier ones); it SIGKILLs itself at `kill_at`."""
  command = [sys.executable, "-m", "experiments.train", "--config=configs/shapes_clip.py:smoke",
             f"--workdir={workdir}", f"--config.data.data_dir={data_dir}", *FLAGS, *flags]
  env = dict(os.environ)  # With the tests' persistent compilation cache (conftest): restarts skip the compiles.
  env.pop(faults.KILL_AT_ENV, None)
  if kill_at:
    env[faults.KILL_AT_ENV] = kill_at
  return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _run(data_dir: str, workdir: str, *flags: str, kill_at: str | None = None) -> tuple[int, str]:
  """Runs the train script, killed at `kill_at`. → (exit code, stderr)."""
  process = _start(data_dir, workdir, *flags, kill_at=kill_at)
  _, stderr = process.communicate(timeout=600)
  return process.returncode, stderr


def _final_params(workdir: str):
  with ocp.StandardCheckpointer() as ckpt:
    return ckpt.restore(os.path.join(workdir, "checkpoints", str(TOTAL_STEPS), "state"))["params"]


def _metric_rows(workdir: str) -> list[dict]:
  """metrics.jsonl without the wall-clock throughput, which differs between runs."""
  return [{k: v for k, v in row.items() if k != "train/steps_per_s"} for row in read_metrics(workdir)]


def _steps(workdir: str) -> list[int]:
  directory = os.path.join(workdir, "checkpoints")
  return sorted(int(n) for n in os.listdir(directory) if n.isdigit()) if os.path.isdir(directory) else []


def _assert_same_run(workdir: str, reference: str) -> None:
  jax.tree.map(np.testing.assert_array_equal, _final_params(reference), _final_params(workdir))
  assert _metric_rows(workdir) == _metric_rows(reference)  # Same rows and values: none duplicated or lost.


@pytest.fixture(scope="module")
def reference(shapes_data_dir, tmp_path_factory) -> str:
  """The workdir of an uninterrupted run."""
  workdir = str(tmp_path_factory.mktemp("fault") / "reference")
  code, stderr = _run(shapes_data_dir, workdir, *REFERENCE_FLAGS)
  assert code == 0 and _steps(workdir) == [6, 12, 18, 24], stderr[-3000:]
  return workdir


def test_interrupted_run_resumes_bitwise(shapes_data_dir, reference, tmp_path):
  """SIGKILL during the first async save, between evaluators and during the final save, plus a SIGTERM
  between checkpoints: the restarted run ends bitwise equal to the uninterrupted one."""
  workdir = str(tmp_path / "interrupted")
  log = []
  for kill_at in INTERRUPTIONS:
    before = _steps(workdir)
    code, stderr = _run(shapes_data_dir, workdir, *KILLED_FLAGS, kill_at=kill_at)
    log.append(f"{kill_at}: exit {code}, checkpoints {before} → {_steps(workdir)}")
    if kill_at.endswith("SIGTERM"):
      # Preemption: save the step it stopped at, exit 0, promptly.
      match = re.search(r"Stopped at step (\d+) on request, ([\d.]+) s after the signal", stderr)
      assert code == 0 and match, stderr[-3000:]
      assert int(match.group(1)) == 13 and _steps(workdir) == [13] and float(match.group(2)) < 30, log
    else:
      assert code == -signal.SIGKILL, f"{kill_at} was never reached:\n{stderr[-3000:]}"
    if kill_at.startswith("save:"):
      # Killed while the save was in flight: that step must not count as a checkpoint, and the
      # one before it must survive although keep_checkpoints=1.
      step = int(kill_at.split(":")[1])
      assert _steps(workdir) == ([step - 8] if step > 8 else []), log
  code, stderr = _run(shapes_data_dir, workdir, *KILLED_FLAGS)
  assert code == 0, stderr[-3000:]
  print("\n".join(log))
  _assert_same_run(workdir, reference)


def test_corrupt_checkpoints_resume_from_the_newest_good_one(shapes_data_dir, reference,
                                                             tmp_path):
  """Every kind of damage at once, newest first: an empty step 24, a truncated data file in 18,
  zero-filled metadata in 12, and the tmp dir of an interrupted save; step 6 is good."""
  workdir = tmp_path / "run"
  shutil.copytree(reference, workdir)
  checkpoints = workdir / "checkpoints"
  for step, corruption in ((24, "empty step directory"), (18, "truncated data file"), (12, "zero-filled metadata")):
    CORRUPTIONS[corruption](checkpoints / str(step))
  (checkpoints / "30.orbax-checkpoint-tmp-1764000000000000" / "state").mkdir(parents=True)

  code, stderr = _run(shapes_data_dir, str(workdir), *REFERENCE_FLAGS)
  assert code == 0, stderr[-3000:]
  for step in (24, 18, 12):
    assert f"checkpoints/{step} cannot be restored" in stderr
    assert (workdir / "checkpoints.corrupt" / str(step)).is_dir(), "bad steps are kept aside, not deleted"
  assert "Resumed from step 6" in stderr
  assert _steps(str(workdir)) == [6, 12, 18, 24]
  _assert_same_run(str(workdir), reference)


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(shapes_data_dir, reference,
                                                                    tmp_path):
  """Resume the reference at step 12 with an absurd learning rate: the temperature overflows."""
  workdir = tmp_path / "run"
  shutil.copytree(reference, workdir)
  for step in (18, 24):
    shutil.rmtree(workdir / "checkpoints" / str(step))
  code, stderr = _run(shapes_data_dir, str(workdir), *REFERENCE_FLAGS, "--config.optim.lr=1e6")
  assert code == 1, stderr[-3000:]
  assert "Traceback" not in stderr
  match = re.search(r"^error: Non-finite (loss|grad_norm) \((nan|inf|-inf)\) at step (\d+); stopping, "
                    r"the last good checkpoint \(step 12\) is kept", stderr, re.M)
  assert match and 12 < int(match.group(3)) <= 16, stderr[-3000:]
  # The error is the last line, with no progress-bar redraws or library logs above it (a resume line may be).
  lines = stderr.splitlines()
  assert lines[-1].startswith(match.group(0)) and len(lines) <= 3, stderr
  assert _steps(str(workdir)) == [6, 12]
  assert max(row["step"] for row in read_metrics(str(workdir))) == 12, "no non-finite metrics are logged"
