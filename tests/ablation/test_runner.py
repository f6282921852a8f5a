"""The runner and its results store, with a fake trainer that starts in milliseconds: command lines,
results read from the run's final_metrics.json, resume, retry, claims, two processes on one workdir."""
import json
import os
import re
import socket
import subprocess
import sys

import pytest

from mmjax import ablation, errors
from mmjax.ablation import results

ACCURACY = "eval/test/accuracy"


def test_train_command_merges_args_and_overrides():
  run = ablation.Run({"fusion": "attention", "smoke": False, "optim.lr": 3e-4, "steps": 5}, seed=2)
  command = ablation.train_command("configs/x.py:smoke,steps=10,head=classifier", run, "/w/r",
                                   {"total_steps": "7", "optim.lr": "1.0"}, train=("train",))
  assert command == ["train", "--config=configs/x.py:smoke=false,steps=5,head=classifier,fusion=attention",
                     "--config.total_steps=7", "--config.optim.lr=0.0003", "--config.seed=2", "--workdir=/w/r"]
  assert ablation.train_command("c.py", ablation.Run({}, 0), "w", train=("t",)) == [
      "t", "--config=c.py", "--config.seed=0", "--workdir=w"]
  assert ablation.TRAIN_COMMAND == (sys.executable, "-m", "experiments.train")
  assert ablation.parse_overrides(["config.total_steps=3", "data.name=a=b"]) == {"total_steps": "3",
                                                                                 "data.name": "a=b"}
  with pytest.raises(errors.ConfigError, match="--seeds"):
    ablation.parse_overrides(["seed=3"])
  with pytest.raises(errors.ConfigError, match="write it as key=value"):
    ablation.parse_overrides(["total_steps"])


def test_error_message_is_the_scripts_error_line_or_the_last_line():
  stderr = "I0101 logging\nTraceback (most recent call last):\nerror: Unknown fusion 'x';\n  known: ['a'].\n"
  assert ablation.error_message(stderr, 2) == "Unknown fusion 'x'; known: ['a']."
  assert ablation.error_message("Traceback:\n  File x\nValueError: boom\n", 1) == "ValueError: boom"
  assert ablation.error_message("", -9) == "killed by SIGKILL (out of memory?); last output: no output on stderr"


def test_final_metrics_file_is_the_one_the_trainer_writes():
  from mmjax.trainer import metric_writer  # Imports jax, which mmjax.ablation must not.

  assert ablation.FINAL_METRICS_FILE == metric_writer.FINAL_METRICS_FILE


def test_failed_runs_are_recorded_and_retried_finished_ones_skipped_claims_respected(fake):
  sweep, config, train, workdir = fake.sweep(), fake.config, fake.train, fake.workdir
  lines = []
  rows = ablation.run_sweep(sweep, config, workdir, [0], {"data.data_dir": "/d"}, train=train,
                            progress=lines.append)
  assert lines[0] == "5 runs (5 points × 1 seeds): 0 finished, 0 failed, 5 to do."
  assert re.fullmatch(r"\[1/5\] fusion=concat,optim.lr=0.001 seed=0: ok in \d+ s, eval/test/accuracy=0.51", lines[1])
  assert re.match(r"\[5/5\] fusion=bad,optim.lr=0.001 seed=0: failed in \d+ s: Unknown fusion 'bad'; "
                  r"known: \['attention', 'concat'\]. \(log: ", lines[5])
  assert [row["status"] for row in rows] == ["ok"] * 4 + ["failed"]
  assert float(rows[3][ACCURACY]) == pytest.approx(0.73) and float(rows[3]["train/loss"]) == 1.5
  assert rows[3]["fusion"] == "attention" and rows[3]["optim.lr"] == "0.003" and rows[3]["seed"] == "0"
  assert rows[3]["step"] == "100" and rows[4]["step"] == ""
  assert "data_dir" not in rows[3]  # Only scalar metrics are stored.
  with open(os.path.join(fake.run_dir(rows[0]["run_id"]), ablation.RUN_LOG)) as f:
    log = f.read()
  # Stdout and stderr go to the log, for people; the results come from final_metrics.json, not stdout's JSON.
  assert log.startswith("$ ") and "--config.data.data_dir=/d" in log and '"eval/test/accuracy": -1.0' in log
  with open(os.path.join(fake.run_dir(rows[4]["run_id"]), ablation.RUN_LOG)) as f:
    assert "error: Unknown fusion 'bad'" in f.read()
  assert not any(os.path.exists(os.path.join(fake.run_dir(row["run_id"]), ablation.CLAIM_FILE)) for row in rows)

  # Seed 1: one run claimed by a process that has died (taken over), one by a live process (left alone).
  dead = subprocess.Popen([sys.executable, "-c", ""])
  dead.wait()
  claims = {"fusion=concat,optim.lr=0.001,seed=1": dead.pid, "fusion=attention,optim.lr=0.003,seed=1": os.getpid()}
  for run_id, pid in claims.items():
    os.makedirs(fake.run_dir(run_id))
    with open(os.path.join(fake.run_dir(run_id), ablation.CLAIM_FILE), "w") as f:
      json.dump({"pid": pid, "host": socket.gethostname(), "start": results.process_start(pid)}, f)
  lines = []
  rows = ablation.run_sweep(sweep, config, workdir, [0, 1], {"data.data_dir": "/d"}, train=train,
                            progress=lines.append)
  assert lines[0] == "10 runs (5 points × 2 seeds): 4 finished, 1 failed, 6 to do."
  assert lines[1].startswith("[5/10] fusion=bad,optim.lr=0.001 seed=0: failed")
  assert "[9/10] fusion=attention,optim.lr=0.003 seed=1: running in another process." in lines
  assert {row["run_id"]: row["status"] for row in rows} == {
      run.run_id: "failed" if "bad" in run.run_id else "ok"
      for run in ablation.plan(sweep, [0, 1]) if run.run_id != "fusion=attention,optim.lr=0.003,seed=1"}
  counts = {run.run_id: fake.times_trained(run.run_id) for run in ablation.plan(sweep, [0, 1])}
  assert counts.pop("fusion=bad,optim.lr=0.001,seed=0") == 2  # Retried.
  assert counts.pop("fusion=attention,optim.lr=0.003,seed=1") == 0
  assert set(counts.values()) == {1}
  rows = ablation.read_rows(workdir)
  assert [row["status"] for row in rows if row["run_id"] == "fusion=bad,optim.lr=0.001,seed=0"] == ["failed"] * 2

  # Without retries and with the live claim gone, only the claimed run is left to do.
  os.remove(os.path.join(fake.run_dir("fusion=attention,optim.lr=0.003,seed=1"), ablation.CLAIM_FILE))
  lines = []
  ablation.run_sweep(sweep, config, workdir, [0, 1], {"data.data_dir": "/d"}, retry_failed=False, train=train,
                     progress=lines.append)
  assert lines[0] == "10 runs (5 points × 2 seeds): 7 finished, 2 failed (not retried), 1 to do."
  assert len(lines) == 2 and lines[1].startswith("[9/10] fusion=attention,optim.lr=0.003 seed=1: ok")
  with open(os.path.join(workdir, "table.md")) as f:
    table = f.read()
  assert "| fusion | optim.lr=0.001 / Accuracy | optim.lr=0.003 / Accuracy |" in table
  assert "| attention | **71.5 ± 0.7** | **73.5 ± 0.7** |" in table
  assert "| bad | failed |  |" in table

  with pytest.raises(errors.ConfigError, match="use a new --workdir"):
    ablation.run_sweep(sweep, config, workdir, [0], {"data.data_dir": "/elsewhere"}, train=train)


def test_two_processes_share_a_workdir_without_running_a_run_twice(fake, tmp_path):
  config, train, workdir = fake.config, fake.train, fake.workdir
  script = (f"from mmjax import ablation; ablation.run_sweep(ablation.load_sweep({config!r}, 'grid'), {config!r}, "
            f"{workdir!r}, range(2), train={train!r}, progress=lambda line: None)")
  # From any directory: mmjax is installed, and the runs get this environment.
  env = dict(os.environ, FAKE_TRAIN_SLEEP="0.2")
  processes = [subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path, env=env) for _ in range(2)]
  assert [p.wait(timeout=120) for p in processes] == [0, 0]
  runs = ablation.plan(fake.sweep(), range(2))
  assert [fake.times_trained(run.run_id) for run in runs] == [1] * len(runs)
  rows = ablation.read_rows(workdir)
  assert sorted(row["run_id"] for row in rows) == sorted(run.run_id for run in runs)
  for name in ablation.REPORT_FILES:
    assert os.path.getsize(os.path.join(workdir, name)) > 0
  assert not [name for name in os.listdir(workdir) if ".tmp" in name]


STOPPED = (r"exited 0 without writing final_metrics.json, so it stopped before finishing \(stopped on a signal\?\); "
           "rerun to resume it.")


def test_a_run_that_exits_0_without_final_metrics_failed(fake, monkeypatch):
  monkeypatch.setenv("FAKE_TRAIN_STOP", "1")  # The runs keep the caller's environment.
  lines = []
  [row] = ablation.run_sweep(fake.sweep("one"), fake.config, fake.workdir, [0], train=fake.train,
                             progress=lines.append)
  assert row["status"] == "failed" and re.fullmatch(STOPPED, row["error"]) and row["step"] == ""
  assert ACCURACY not in row
  assert re.match(r"\[1/1\] fusion=concat seed=0: failed in \d+ s: " + STOPPED, lines[1])
  with open(os.path.join(fake.workdir, "table.md")) as f:
    assert "| concat | failed |" in f.read()


def test_final_metrics_of_an_earlier_attempt_are_not_this_attempts(fake, monkeypatch):
  sweep = fake.sweep("one")
  monkeypatch.setenv("FAKE_TRAIN_ACCURACY", "nan")
  [row] = ablation.run_sweep(sweep, fake.config, fake.workdir, [0], train=fake.train, progress=lambda line: None)
  assert row["status"] == "failed" and row["error"] == (
      "no finite final value of ['eval/test/accuracy']; the run reported ['eval/test/accuracy', 'train/loss'].")
  final_metrics = os.path.join(fake.run_dir(row["run_id"]), ablation.FINAL_METRICS_FILE)
  assert os.path.exists(final_metrics)  # The first attempt's, left behind.

  # The retry stops before finishing: the first attempt's file must not stand in for its result.
  monkeypatch.delenv("FAKE_TRAIN_ACCURACY")
  monkeypatch.setenv("FAKE_TRAIN_STOP", "1")
  [row] = ablation.run_sweep(sweep, fake.config, fake.workdir, [0], train=fake.train, progress=lambda line: None)
  assert row["status"] == "failed" and re.fullmatch(STOPPED, row["error"])
  assert not os.path.exists(final_metrics)

  # Even a finished attempt's finite metrics (its row never written: ablate killed in between) are not taken.
  with open(final_metrics, "w") as f:
    json.dump({"step": 100, ACCURACY: 0.99}, f)
  [row] = ablation.run_sweep(sweep, fake.config, fake.workdir, [0], train=fake.train, progress=lambda line: None)
  assert row["status"] == "failed" and re.fullmatch(STOPPED, row["error"])

  monkeypatch.delenv("FAKE_TRAIN_STOP")
  [row] = ablation.run_sweep(sweep, fake.config, fake.workdir, [0], train=fake.train, progress=lambda line: None)
  assert row["status"] == "ok" and float(row[ACCURACY]) == pytest.approx(0.5) and row["step"] == "100"
  assert [r["status"] for r in ablation.read_rows(fake.workdir)] == ["failed"] * 3 + ["ok"]
  assert fake.times_trained(row["run_id"]) == 4
