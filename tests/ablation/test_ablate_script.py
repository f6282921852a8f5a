"""`python -m experiments.ablate` end to end: a real smoke sweep of two points (+ one failing point) trained by
experiments.train, its reports, and a resume."""
import csv
import json
import math
import os
import shlex
import subprocess
import sys
import textwrap

import pytest

from mmjax import ablation

ACCURACY = "eval/test/accuracy"

# Relies only on shapes_clip's smoke config having `evals` (one of them the zero-shot evaluator, whose metric is
# accuracy), `keep_checkpoints`, `total_steps` and `data.data_dir`; like any config it imports nothing from mmjax.
TINY_CONFIG = textwrap.dedent("""
    r'''The Shapes CLIP smoke config with a single eval, zero-shot colour accuracy, and a sweep of two points.'''
    import ml_collections

    from configs import shapes_clip


    def get_config(arg=None):
      args = dict(item.split("=") for item in (arg or "").split(",") if item)
      config = shapes_clip.get_config("smoke")
      zero_shot = next(block for block in config.evals.values() if block.name == "zero_shot")
      with config.unlocked():
        config.evals = ml_collections.ConfigDict(dict(test=zero_shot))
      config.keep_checkpoints = int(args.get("keep", 1))
      return config


    SWEEPS = {
        # Axes that leave the compiled programs alone, so every run after the first loads them from the
        # compilation cache: the eval split (rows) and the checkpoints kept (columns, a get_config arg).
        "tiny": dict(
            points=[{"evals.test.split": "test[:64]", "keep": 1}, {"evals.test.split": "test[64:128]", "keep": 2},
                    {"evals.test.split": "test[:64]", "keep": 0}],  # The trainer rejects keep_checkpoints=0.
            metrics=["eval/test/accuracy"],
            columns="keep",
            metric_names={"eval/test/accuracy": "Accuracy"},
        ),
    }
    """)


def _ablate(cwd: str, *args: str) -> subprocess.CompletedProcess:
  """The script from `cwd`, outside the repository: mmjax, configs and experiments are installed."""
  return subprocess.run([sys.executable, "-m", "experiments.ablate", *args], cwd=cwd, capture_output=True,
                        text=True, timeout=900)


@pytest.mark.slow
def test_ablate_smoke_sweep_writes_reports_records_a_failure_and_resumes(shapes_data_dir, tmp_path):
  (tmp_path / "tiny.py").write_text(TINY_CONFIG)
  workdir = str(tmp_path / "ablate")
  # A fifth of the smoke run's steps, still past its learning-rate warmup (10 steps): a run's cost is mostly
  # starting up and saving, not its steps.
  flags = [f"--config={tmp_path / 'tiny.py'}", "--sweep=tiny", "--seeds=1", f"--workdir={workdir}",
           f"--override=data.data_dir={shapes_data_dir}", "--override=total_steps=12"]
  first = _ablate(tmp_path, *flags)
  assert first.returncode == 1, first.stdout + first.stderr[-5000:]  # 1: a run failed.
  assert "3 runs (3 points × 1 seeds): 0 finished, 0 failed, 3 to do." in first.stdout
  assert "[3/3] evals.test.split=test[:64],keep=0 seed=0: failed" in first.stdout
  assert "0 of" not in first.stdout.splitlines()[-1] and "2 of 3 runs ok, 1 failed" in first.stdout

  for name in (ablation.RESULTS_FILE, *ablation.REPORT_FILES):
    assert os.path.getsize(os.path.join(workdir, name)) > 0, name
  with open(os.path.join(workdir, ablation.RESULTS_FILE), newline="") as f:
    rows = list(csv.DictReader(f))
  assert [row["status"] for row in rows] == ["ok"] * 2 + ["failed"]
  assert all(math.isfinite(float(row[ACCURACY])) and float(row["wall_s"]) > 0 and row["step"] == "12"
             for row in rows[:2])
  assert rows[2]["error"] == "config.keep_checkpoints=0: each must be a positive integer."
  assert all(row["commit"] and row["date"] and row["machine"] for row in rows)  # Their values: test_provenance.py.
  with open(os.path.join(workdir, ablation.SETTINGS_FILE)) as f:
    assert json.load(f)["commands"] == [{"sweep": "tiny", "seeds": [0],
                                         "command": shlex.join(["python", "-m", "experiments.ablate", *flags])}]
  with open(os.path.join(workdir, "table.md")) as f:
    table = f.read()
  assert "| evals.test.split | keep=1 / Accuracy | keep=2 / Accuracy | keep=0 / Accuracy |" in table
  assert "| test[:64] |" in table and "| test[64:128] |" in table  # (Bold best cells: tests/ablation/test_report.)
  assert "| failed |" in table

  logs = {row["run_id"]: os.path.join(workdir, "runs", row["run_id"], ablation.RUN_LOG) for row in rows}
  mtimes = {run_id: os.path.getmtime(log) for run_id, log in logs.items()}
  second = _ablate(tmp_path, *flags, "--noretry_failed")
  assert "2 finished, 1 failed (not retried), 0 to do." in second.stdout, second.stdout + second.stderr[-3000:]
  assert {run_id: os.path.getmtime(log) for run_id, log in logs.items()} == mtimes
  assert len(ablation.read_rows(workdir)) == 3
  with open(os.path.join(workdir, "table.md")) as f:
    assert f.read() == table

  reports = {}
  for name in ablation.REPORT_FILES:
    with open(os.path.join(workdir, name), "rb") as f:
      reports[name] = f.read()
    os.remove(os.path.join(workdir, name))
  third = _ablate(tmp_path, *flags, "--report_only")
  assert third.returncode == 1 and "2 of 3 runs ok, 1 failed" in third.stdout, third.stderr[-3000:]
  for name in ("table.md", "table.tex"):
    with open(os.path.join(workdir, name), "rb") as f:
      assert f.read() == reports[name], name
  assert os.path.getsize(os.path.join(workdir, "plot.png")) > 0
