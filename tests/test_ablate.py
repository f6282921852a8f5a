"""The ablation runner: sweep bookkeeping (resume, retry, claims, two processes on one workdir)
with a fake trainer that starts in milliseconds, the tables on hand-made results, and one real
2×2 smoke sweep (+ one failing point) from the command line."""
import csv
import json
import math
import os
import re
import subprocess
import sys
import textwrap

import pytest

from mmjax import ablation, errors
from tests.helpers import REPO

ACCURACY = "eval/test/accuracy"

# A config whose `sweep("grid")` is 2 fusions × 2 learning rates, plus a point the trainer rejects.
FAKE_CONFIG = textwrap.dedent("""
    from mmjax import ablation, errors


    def get_config(arg=None):
      raise NotImplementedError("The fake trainer does not load configs.")


    def sweep(name):
      if name != "grid":
        raise errors.ConfigError(f"Unknown sweep {name!r}; known: ['grid'].")
      points = [{"fusion": fusion, "optim.lr": lr} for fusion in ("concat", "attention") for lr in (0.001, 0.003)]
      points.append({"fusion": "bad", "optim.lr": 0.001})
      return ablation.Sweep(points, metrics=["eval/test/accuracy"], columns="optim.lr",
                            metric_names={"eval/test/accuracy": "Accuracy"})
    """)

# Stands in for experiments.train: same command line, same last output, a failure like a config error.
FAKE_TRAIN = textwrap.dedent("""
    import json, os, sys, time

    args = dict(arg.removeprefix("--").split("=", 1) for arg in sys.argv[1:])
    config_args = args["config"].partition(":")[2].split(",")
    with open(os.path.join(args["workdir"], "trained"), "a") as f:
      f.write(" ".join(sys.argv[1:]) + "\\n")
    time.sleep(float(os.environ.get("FAKE_TRAIN_SLEEP", "0")))
    if "fusion=bad" in config_args:
      print("Traceback (most recent call last):\\nerror: Unknown fusion 'bad'; known: ['attention', 'concat'].",
            file=sys.stderr)
      sys.exit(2)
    accuracy = (0.5 + 0.2 * ("fusion=attention" in config_args) + 10 * float(args["config.optim.lr"])
                + 0.01 * int(args["config.seed"]))
    print("train: 100%|####| {")
    print(json.dumps({"workdir": args["workdir"], "eval/test/accuracy": accuracy, "train/loss": 1.5,
                      "data_dir": args.get("config.data.data_dir", "")}, indent=1, sort_keys=True))
    """)


@pytest.fixture
def fake(tmp_path):
  """(sweep, config path, train command, workdir) of the fake config and trainer."""
  (tmp_path / "fake_config.py").write_text(FAKE_CONFIG)
  (tmp_path / "fake_train.py").write_text(FAKE_TRAIN)
  config = str(tmp_path / "fake_config.py")
  return ablation.load_sweep(config, "grid"), config, (sys.executable, str(tmp_path / "fake_train.py")), \
      str(tmp_path / "work")


def _times_trained(workdir: str, run_id: str) -> int:
  path = os.path.join(workdir, "runs", run_id, "trained")
  if not os.path.exists(path):
    return 0
  with open(path) as f:
    return len(f.readlines())


def test_train_command_merges_args_and_overrides():
  run = ablation.Run({"fusion": "attention", "smoke": False, "optim.lr": 3e-4, "steps": 5}, seed=2)
  command = ablation.train_command("configs/x.py:smoke,steps=10,head=classifier", run, "/w/r",
                                   {"total_steps": "7", "optim.lr": "1.0"}, train=("train",))
  assert command == ["train", "--config=configs/x.py:smoke=false,steps=5,head=classifier,fusion=attention",
                     "--config.total_steps=7", "--config.optim.lr=0.0003", "--config.seed=2", "--workdir=/w/r"]
  assert run.run_id == "fusion=attention,smoke=false,optim.lr=0.0003,steps=5,seed=2"
  assert ablation.run_id({"split": "test[:64]"}, 0) == "split=test__64_,seed=0"
  assert ablation.train_command("c.py", ablation.Run({}, 0), "w", train=("t",)) == [
      "t", "--config=c.py", "--config.seed=0", "--workdir=w"]
  assert ablation.parse_overrides(["config.total_steps=3", "data.name=a=b"]) == {"total_steps": "3",
                                                                                 "data.name": "a=b"}
  with pytest.raises(errors.ConfigError, match="--seeds"):
    ablation.parse_overrides(["seed=3"])


@pytest.mark.parametrize("kwargs, message", [
    (dict(points=[{"a": 1}, {"b": 2}], metrics=["m"], columns="a"), "lacks the columns key 'a'"),
    (dict(points=[{"a": 1}, {"a": 1}], metrics=["m"]), "repeat"),
    (dict(points=[{"a": 1}], metrics=["m"], metric_names={"n": "N"}), r"not in it: \['n'\]"),
    (dict(points=[{"seed": 1}], metrics=["m"]), "other than"),
    (dict(points=[{"a": "x,y"}], metrics=["m"]), "no comma"),
    (dict(points=[], metrics=["m"]), "at least one point"),
])
def test_bad_sweeps_name_the_problem(kwargs, message):
  with pytest.raises(errors.ConfigError, match=message):
    ablation.Sweep(**kwargs)


def test_load_sweep_reports_an_unknown_sweep_and_an_old_style_one(fake, tmp_path):
  _, config, _, _ = fake
  with pytest.raises(errors.ConfigError, match=r"Unknown sweep 'nope'; known: \['grid'\]"):
    ablation.load_sweep(config, "nope")
  (tmp_path / "old.py").write_text("def sweep():\n  return [{'optim.lr': 0.1}]\n")
  with pytest.raises(errors.ConfigError, match="needs a `sweep.name.` function"):
    ablation.load_sweep(str(tmp_path / "old.py") + ":smoke", "x")


def test_failed_runs_are_recorded_and_retried_finished_ones_skipped_claims_respected(fake):
  sweep, config, train, workdir = fake
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
  assert "data_dir" not in rows[3]  # Only scalar metrics are stored.
  with open(os.path.join(workdir, "runs", rows[0]["run_id"], ablation.RUN_LOG)) as f:
    log = f.read()
  assert log.startswith("$ ") and "--config.data.data_dir=/d" in log and '"eval/test/accuracy": 0.51' in log
  assert not any(os.path.exists(os.path.join(workdir, "runs", row["run_id"], ablation.CLAIM_FILE)) for row in rows)

  # Seed 1: one run claimed by a process that has died (taken over), one by a live process (left alone).
  dead = subprocess.Popen([sys.executable, "-c", ""])
  dead.wait()
  claims = {"fusion=concat,optim.lr=0.001,seed=1": dead.pid, "fusion=attention,optim.lr=0.003,seed=1": os.getpid()}
  for run_id, pid in claims.items():
    os.makedirs(os.path.join(workdir, "runs", run_id))
    with open(os.path.join(workdir, "runs", run_id, ablation.CLAIM_FILE), "w") as f:
      json.dump({"pid": pid, "host": ablation.socket.gethostname(), "start": ablation._process_start(pid)}, f)
  lines = []
  rows = ablation.run_sweep(sweep, config, workdir, [0, 1], {"data.data_dir": "/d"}, train=train,
                            progress=lines.append)
  assert lines[0] == "10 runs (5 points × 2 seeds): 4 finished, 1 failed, 6 to do."
  assert lines[1].startswith("[5/10] fusion=bad,optim.lr=0.001 seed=0: failed")
  assert "[9/10] fusion=attention,optim.lr=0.003 seed=1: running in another process." in lines
  assert {row["run_id"]: row["status"] for row in rows} == {
      run.run_id: "failed" if "bad" in run.run_id else "ok"
      for run in ablation.plan(sweep, [0, 1]) if run.run_id != "fusion=attention,optim.lr=0.003,seed=1"}
  counts = {run.run_id: _times_trained(workdir, run.run_id) for run in ablation.plan(sweep, [0, 1])}
  assert counts.pop("fusion=bad,optim.lr=0.001,seed=0") == 2  # Retried.
  assert counts.pop("fusion=attention,optim.lr=0.003,seed=1") == 0
  assert set(counts.values()) == {1}
  results = ablation.read_rows(workdir)
  assert [row["status"] for row in results if row["run_id"] == "fusion=bad,optim.lr=0.001,seed=0"] == ["failed"] * 2

  # Without retries and with the live claim gone, only the claimed run is left to do.
  os.remove(os.path.join(workdir, "runs", "fusion=attention,optim.lr=0.003,seed=1", ablation.CLAIM_FILE))
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
  _, config, train, workdir = fake
  script = (f"from mmjax import ablation; ablation.run_sweep(ablation.load_sweep({config!r}, 'grid'), {config!r}, "
            f"{workdir!r}, range(2), train={train!r}, progress=lambda line: None)")
  env = dict(os.environ, PYTHONPATH=REPO, FAKE_TRAIN_SLEEP="0.2")
  processes = [subprocess.Popen([sys.executable, "-c", script], cwd=REPO, env=env) for _ in range(2)]
  assert [p.wait(timeout=120) for p in processes] == [0, 0]
  sweep = ablation.load_sweep(config, "grid")
  runs = ablation.plan(sweep, range(2))
  assert [_times_trained(workdir, run.run_id) for run in runs] == [1] * len(runs)
  rows = ablation.read_rows(workdir)
  assert sorted(row["run_id"] for row in rows) == sorted(run.run_id for run in runs)
  for name in ablation.REPORT_FILES:
    assert os.path.getsize(os.path.join(workdir, name)) > 0
  assert not [name for name in os.listdir(workdir) if ".tmp" in name]


def _row(point, seed, status="ok", **metrics):
  return {"run_id": ablation.run_id(point, seed), "seed": seed, "status": status, "error": "",
          **{key: repr(value) for key, value in metrics.items()}}


def test_tables_report_mean_std_best_and_missing_seeds(tmp_path):
  points = [{"fusion": fusion, "variant": variant} for fusion in ("concat", "cross_attn") for variant in ("a", "b")]
  sweep = ablation.Sweep(points, metrics=["eval/acc", "eval/loss"], columns="variant",
                         metric_names={"eval/acc": "Accuracy"}, lower_is_better=["eval/loss"])
  concat_a, concat_b, cross_a, cross_b = points
  rows = [
      *(_row(concat_a, s, **{"eval/acc": acc, "eval/loss": loss}) for s, acc, loss in
        [(0, 0.80, 2.0), (1, 0.82, 1.0), (2, 0.84, 3.0)]),
      *(_row(cross_a, s, **{"eval/acc": acc, "eval/loss": loss}) for s, acc, loss in
        [(0, 0.90, 4.0), (1, 0.92, 4.0), (2, 0.94, 4.0)]),
      _row(concat_b, 0, **{"eval/acc": 0.5, "eval/loss": 1.0}), _row(concat_b, 1, "failed"),
      _row(concat_b, 1, **{"eval/acc": 0.7, "eval/loss": 1.0}),  # A retry: the last row of a run counts.
      _row(concat_b, 2, "failed"),
      _row(cross_b, 0, "failed"), _row(cross_b, 7, **{"eval/acc": 1.0}),  # Seed 7 was not asked for.
  ]
  summary = ablation.summarize(sweep, rows, range(3))
  cell = summary.cells[0, 0, "eval/acc"]
  assert cell.values == (0.80, 0.82, 0.84) and cell.mean == pytest.approx(0.82) and cell.std == pytest.approx(0.02)
  assert summary.cells[0, 1, "eval/acc"].failed == 1 and math.isnan(summary.cells[1, 1, "eval/acc"].mean)
  assert ablation.markdown_table(summary) == textwrap.dedent("""\
      | fusion | variant=a / Accuracy | variant=a / eval/loss | variant=b / Accuracy | variant=b / eval/loss |
      |:--|--:|--:|--:|--:|
      | concat | 82.0 ± 2.0 | **2.00 ± 1.00** | 60.0 ± 14.1 (n=2) | 1.00 ± 0.00 (n=2) |
      | cross_attn | **92.0 ± 2.0** | 4.00 ± 0.00 | failed | failed |

      """) + ("Mean ± std over 3 seeds (0–2) of the finished runs (std with ddof=1; — for a single run); "
              "(n=k): only k of 3 seeds finished; failed: none did; pending: not run yet. Accuracy: ×100. Best "
              "mean per column in bold (lowest for eval/loss).\n")
  latex = ablation.latex_table(summary)
  assert r"\multicolumn{2}{c}{variant=a} & \multicolumn{2}{c}{variant=b} \\" in latex
  assert r"\cmidrule(lr){2-3}\cmidrule(lr){4-5}" in latex
  assert r"fusion & Accuracy & eval/loss & Accuracy & eval/loss \\" in latex
  assert r"cross\_attn & \textbf{92.0 $\pm$ 2.0} & 4.00 $\pm$ 0.00 & failed & failed \\" in latex
  assert latex.index(r"\toprule") < latex.index(r"\midrule") < latex.index(r"\bottomrule")

  one_seed = ablation.markdown_table(ablation.summarize(sweep, rows, [0]))
  # Variant b has a single cell with a value: nothing to be best against, so no bold.
  assert "| concat | 80.0 ± — | **2.00 ± —** | 50.0 ± — | 1.00 ± — |" in one_seed
  assert "| cross_attn | **90.0 ± —** | 4.00 ± — | failed | failed |" in one_seed
  pending = ablation.markdown_table(ablation.summarize(sweep, [], [0]))
  assert "| concat | pending | pending | pending | pending |" in pending
  no_columns = ablation.Sweep([{"v": "a"}, {"v": "b"}], metrics=["m"])
  rows = [_row({"v": "a"}, 0, m=0.5), _row({"v": "b"}, 0, m=0.25)]
  table = ablation.markdown_table(ablation.summarize(no_columns, rows, [0]))
  assert table.startswith("| v | m |\n|:--|--:|\n| a | **50.0 ± —** |\n| b | 25.0 ± — |\n")

  ablation.plot(summary, str(tmp_path / "plot.png"))
  with open(tmp_path / "plot.png", "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"


TINY_CONFIG = textwrap.dedent("""
    r'''The Shapes VQA smoke config cut to 4 steps and a 64-question eval, with a 2×2 sweep.'''
    import ml_collections

    from configs import common, shapes_vqa
    from mmjax import ablation, errors


    def get_config(arg=None):
      arg = common.parse_arg(arg, keep=1)
      config = shapes_vqa.get_config("head=classifier,smoke,steps=4")
      with config.unlocked():
        config.evals = ml_collections.ConfigDict(dict(test=dict(type="vqa", split="test[:64]", every_steps=30)))
      config.update(batch_size=16, eval_batch_size=64, keep_checkpoints=arg.keep)
      config.optim.warmup_steps = 1
      return config


    def sweep(name):
      if name != "tiny":
        raise errors.ConfigError(f"Unknown sweep {name!r}; known: ['tiny'].")
      # Axes that leave the compiled programs alone, so every run after the first loads them from
      # the compilation cache: the eval split (rows) and the checkpoints kept (columns).
      points = [{"evals.test.split": split, "keep": keep} for split in ("test[:64]", "test[64:128]")
                for keep in (1, 2)]
      points.append({"evals.test.split": "test[:64]", "keep": 0})  # The trainer rejects keep_checkpoints=0.
      return ablation.Sweep(points, metrics=["eval/test/accuracy"], columns="keep",
                            metric_names={"eval/test/accuracy": "Accuracy"})
    """)


def _ablate(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", "experiments.ablate", *args], cwd=REPO, capture_output=True,
                        text=True, timeout=900, env=dict(os.environ, PYTHONPATH=REPO))


@pytest.mark.slow
def test_ablate_smoke_sweep_writes_reports_records_a_failure_and_resumes(shapes_data_dir, tmp_path):
  (tmp_path / "tiny.py").write_text(TINY_CONFIG)
  workdir = str(tmp_path / "ablate")
  flags = [f"--config={tmp_path / 'tiny.py'}", "--sweep=tiny", "--seeds=1", f"--workdir={workdir}",
           f"--override=data.data_dir={shapes_data_dir}"]
  first = _ablate(*flags)
  assert first.returncode == 1, first.stdout + first.stderr[-5000:]  # 1: a run failed.
  assert "5 runs (5 points × 1 seeds): 0 finished, 0 failed, 5 to do." in first.stdout
  assert "[5/5] evals.test.split=test[:64],keep=0 seed=0: failed" in first.stdout
  assert "0 of" not in first.stdout.splitlines()[-1] and "4 of 5 runs ok, 1 failed" in first.stdout

  for name in (ablation.RESULTS_FILE, *ablation.REPORT_FILES):
    assert os.path.getsize(os.path.join(workdir, name)) > 0, name
  with open(os.path.join(workdir, ablation.RESULTS_FILE), newline="") as f:
    rows = list(csv.DictReader(f))
  assert [row["status"] for row in rows] == ["ok"] * 4 + ["failed"]
  assert all(math.isfinite(float(row[ACCURACY])) and float(row["wall_s"]) > 0 for row in rows[:4])
  assert rows[4]["error"] == "config.keep_checkpoints=0: each must be a positive integer."
  with open(os.path.join(workdir, "table.md")) as f:
    table = f.read()
  assert "| evals.test.split | keep=1 / Accuracy | keep=2 / Accuracy | keep=0 / Accuracy |" in table
  assert "| test[:64] |" in table and "| test[64:128] |" in table and "**" in table
  assert "| failed |" in table

  logs = {row["run_id"]: os.path.join(workdir, "runs", row["run_id"], ablation.RUN_LOG) for row in rows}
  mtimes = {run_id: os.path.getmtime(log) for run_id, log in logs.items()}
  second = _ablate(*flags, "--noretry_failed")
  assert "4 finished, 1 failed (not retried), 0 to do." in second.stdout, second.stdout + second.stderr[-3000:]
  assert {run_id: os.path.getmtime(log) for run_id, log in logs.items()} == mtimes
  assert len(ablation.read_rows(workdir)) == 5
  with open(os.path.join(workdir, "table.md")) as f:
    assert f.read() == table

  reports = {}
  for name in ablation.REPORT_FILES:
    with open(os.path.join(workdir, name), "rb") as f:
      reports[name] = f.read()
    os.remove(os.path.join(workdir, name))
  third = _ablate(*flags, "--report_only")
  assert third.returncode == 1 and "4 of 5 runs ok, 1 failed" in third.stdout, third.stderr[-3000:]
  for name in ("table.md", "table.tex"):
    with open(os.path.join(workdir, name), "rb") as f:
      assert f.read() == reports[name], name
  assert os.path.getsize(os.path.join(workdir, "plot.png")) > 0
