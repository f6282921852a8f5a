"""The runner records where each row comes from (commit, date, machine) and which commands ran the sweep; a
one-point sweep of the base config (`points=[{}]`) runs and reports per-run wall time as a metric."""
import datetime
import json
import os
import re
import textwrap

import pytest

from mmjax import ablation, errors, provenance
from mmjax.ablation import results

# A headline sweep: the base config alone, its accuracy and each run's wall seconds (a column of results.csv).
HEADLINE_CONFIG = textwrap.dedent("""
    SWEEPS = {"headline": dict(points=[{}], metrics=["eval/test/accuracy", "wall_s"],
                               metric_names={"wall_s": "Wall s"}, lower_is_better=["wall_s"])}
    """)


def _settings(workdir: str) -> dict:
  with open(os.path.join(workdir, ablation.SETTINGS_FILE)) as f:
    return json.load(f)


def test_rows_carry_commit_date_and_machine_and_ablate_json_the_commands(fake):
  start = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
  command = "python -m experiments.ablate --sweep=one --seeds=2"
  rows = ablation.run_sweep(fake.sweep("one"), fake.config, fake.workdir, [0, 1], train=fake.train,
                            progress=lambda line: None, sweep_name="one", command=command)
  for row in rows:
    assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", row["commit"]) and row["machine"] == provenance.machine()
    date = datetime.datetime.strptime(row["date"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    assert start <= date <= datetime.datetime.now(datetime.timezone.utc)
  header = list(results.read_rows(fake.workdir)[0])
  assert header[:10] == ["run_id", "fusion", "seed", "status", "error", "wall_s", "step", "commit", "date", "machine"]

  # The same command again is recorded once; another one (more seeds) is added; the settings check ignores them.
  ablation.run_sweep(fake.sweep("one"), fake.config, fake.workdir, [0, 1], train=fake.train,
                     progress=lambda line: None, sweep_name="one", command=command)
  ablation.run_sweep(fake.sweep("one"), fake.config, fake.workdir, [0, 1, 2], train=fake.train,
                     progress=lambda line: None, sweep_name="one", command=command.replace("2", "3"))
  settings = _settings(fake.workdir)
  assert settings["commands"] == [{"sweep": "one", "seeds": [0, 1], "command": command},
                                  {"sweep": "one", "seeds": [0, 1, 2], "command": command.replace("2", "3")}]
  assert settings["overrides"] == {} and settings["config"] == os.path.abspath(fake.config)
  with pytest.raises(errors.ConfigError, match=r'holds runs trained with \{"config": .*"overrides": \{\}\}, not'):
    ablation.run_sweep(fake.sweep("one"), fake.config, fake.workdir, [0], {"total_steps": "5"}, train=fake.train)


def test_a_sweep_of_the_base_config_alone_reports_accuracy_and_wall_time(fake, tmp_path):
  (tmp_path / "headline.py").write_text(HEADLINE_CONFIG)
  sweep = ablation.load_sweep(str(tmp_path / "headline.py"), "headline")
  assert sweep.row_keys == () and [run.run_id for run in ablation.plan(sweep, [0, 1])] == ["seed=0", "seed=1"]
  assert ablation.Run({}, 1).label == "(base config) seed=1"
  lines = []
  rows = ablation.run_sweep(sweep, fake.config, fake.workdir, [0, 1], train=fake.train, progress=lines.append)
  # wall_s is a column of the row, not a final metric: the run is ok without it in final_metrics.json.
  assert [(row["run_id"], row["status"]) for row in rows] == [("seed=0", "ok"), ("seed=1", "ok")]
  assert re.fullmatch(r"\[1/2\] \(base config\) seed=0: ok in \d+ s, eval/test/accuracy=0.5, wall_s=[\d.]+",
                      lines[1])
  with open(os.path.join(fake.run_dir("seed=0"), "trained")) as f:
    assert f.read().split() == ["--config=" + fake.config, "--config.seed=0",
                                "--workdir=" + fake.run_dir("seed=0")]
  summary = ablation.summarize(sweep, rows, [0, 1])
  wall = summary.cells[0, 0, "wall_s"]
  assert wall.values == tuple(float(row["wall_s"]) for row in rows)
  assert summary.scale["wall_s"] == 1  # Seconds, even when every run took less than one (never shown ×100).
  with open(os.path.join(fake.workdir, "table.md")) as f:
    table = f.read().splitlines()
  assert table[:3] == ["| eval/test/accuracy | Wall s |", "|--:|--:|",
                       f"| 50.5 ± 0.7 | {summary.shown(wall.mean, 'wall_s')} ± {summary.shown(wall.std, 'wall_s')} |"]
