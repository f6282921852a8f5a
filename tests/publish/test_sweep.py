"""Publishing a sweep from a hand-made workdir: the copied rows, the statistics (checked by hand), the runner's
table with the provenance line, and sweeps recorded before provenance existed ("not recorded", never invented)."""
import csv
import json
import os
import textwrap

import pytest

from mmjax import ablation, errors
from mmjax.publish import store, sweep

CONFIG = textwrap.dedent("""
    SWEEPS = {"grid": dict(points=[{"fusion": "a"}, {"fusion": "b"}], metrics=["eval/acc", "wall_s"],
                           metric_names={"eval/acc": "Accuracy", "wall_s": "Wall s"}, lower_is_better=["wall_s"])}
    """)
COMMIT = "0123456789abcdef0123456789abcdef01234567"
OTHER = "fedcba9876543210fedcba9876543210fedcba98"
MACHINE = "AMD EPYC 7B13, 2 cores"


def _row(fusion, seed, status="ok", acc="", wall="", commit=COMMIT, date="2026-12-01T10:00:00Z", **extra):
  return {"run_id": ablation.run_id({"fusion": fusion}, seed), "fusion": fusion, "seed": str(seed), "status": status,
          "error": "boom" if status == "failed" else "", "wall_s": str(wall), "step": "100", "commit": commit,
          "date": date, "machine": MACHINE, "eval/acc": str(acc), **extra}


ROWS = [
    _row("a", 0, acc=0.80, wall=100.0, date="2026-12-01T09:00:00Z"),
    _row("a", 1, acc=0.90, wall=120.0),
    _row("a", 2, "failed", wall=5.0),
    _row("a", 2, acc=0.85, wall=110.0, date="2026-12-01T11:30:00Z"),  # The retry counts.
    _row("b", 0, acc=0.50, wall=50.0, commit=OTHER + "+dirty"),
    _row("b", 1, "failed", wall=7.0),
    # b with seed 2: not run yet. A run of another sweep in the same workdir is not published.
    {**_row("c", 0, acc=0.1, wall=1.0), "run_id": "other=1,seed=0"},
]


def _workdir(tmp_path, rows, commands=True) -> str:
  (tmp_path / "config.py").write_text(CONFIG)
  workdir = tmp_path / "ablate"
  workdir.mkdir()
  settings = {"config": str(tmp_path / "config.py"), "config_args": "smoke", "overrides": {"total_steps": "400"}}
  if commands:
    settings["commands"] = [{"sweep": "grid", "seeds": [0, 1, 2], "command": "python -m experiments.ablate --x"}]
  (workdir / "ablate.json").write_text(json.dumps(settings))
  with open(workdir / "results.csv", "w", newline="") as f:
    writer = csv.DictWriter(f, list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
  return str(workdir)


def test_publish_writes_the_rows_their_statistics_and_the_runners_table_with_its_provenance(tmp_path):
  root = tmp_path / "repo"
  directory = sweep.publish(_workdir(tmp_path, ROWS), "grid_400", str(root))
  assert directory == str(root / "experiments" / "results" / "grid_400")
  with open(os.path.join(directory, "results.csv")) as f:
    assert [row["run_id"] for row in csv.DictReader(f)] == [row["run_id"] for row in ROWS[:-1]]
  with open(os.path.join(directory, "summary.json")) as f:
    summary = json.load(f)
  assert summary["kind"] == "sweep" and summary["name"] == "grid_400"
  inputs = summary["inputs"]
  assert (inputs["sweep_name"], inputs["seeds"], inputs["commands"]) == ("grid", [0, 1, 2],
                                                                         ["python -m experiments.ablate --x"])
  assert (inputs["config_args"], inputs["overrides"]) == ("smoke", {"total_steps": "400"})
  assert inputs["config"] == str(tmp_path / "config.py")  # Outside the repository: as it is.
  a, b = summary["points"]
  # a: 0.80, 0.90, 0.85 → mean 0.85, std sqrt((0.05² + 0.05² + 0²) / 2) = 0.05; walls 100, 120, 110 → 110 ± 10.
  assert a["point"] == {"fusion": "a"} and a["runs"] == {"ok": 3, "failed": 0, "pending": 0}
  assert a["metrics"]["eval/acc"]["values"] == [0.80, 0.90, 0.85]
  for metric, mean, std in (("eval/acc", 0.85, 0.05), ("wall_s", 110, 10)):
    assert (a["metrics"][metric]["mean"], a["metrics"][metric]["std"]) == (pytest.approx(mean), pytest.approx(std))
  assert b["runs"] == {"ok": 1, "failed": 1, "pending": 1}
  assert b["metrics"]["eval/acc"] == {"mean": 0.5, "std": None, "n": 1, "values": [0.5]}
  assert summary["runs"] == {"planned": 6, "ok": 4, "failed": 1}
  assert summary["provenance"] == {"commits": {COMMIT: 4, OTHER + "+dirty": 1}, "machines": {MACHINE: 5},
                                   "dates": {"first": "2026-12-01T09:00:00Z", "last": "2026-12-01T11:30:00Z",
                                             "not_recorded": 0}}
  with open(os.path.join(directory, "table.md")) as f:
    table = f.read()
  runner_table = ablation.markdown_table(ablation.summarize(ablation.Sweep(**inputs["sweep"]), ROWS, [0, 1, 2]))
  assert table == runner_table + "\n" + (
      "Measured by `python -m experiments.ablate --x`: 4 of 6 runs ok, 1 failed, 50–120 s each; commit: "
      "`0123456789ab` (4 runs), `fedcba987654+dirty` (1 run); date: 2026-12-01 09:00 – 2026-12-01 11:30 UTC; "
      "machine: AMD EPYC 7B13, 2 cores.\n")
  assert "| a | **85.0 ± 5.0** | 110 ± 10 |" in table and "| b | 50.0 ± — (n=1) | **50 ± —** (n=1) |" in table
  assert sweep.render(directory) == {"summary.json": store.json_text(summary), "table.md": table}


def test_a_sweep_run_before_provenance_existed_shows_not_recorded(tmp_path):
  old_keys = ("commit", "date", "machine")
  rows = [{key: value for key, value in row.items() if key not in old_keys} for row in ROWS]
  workdir = _workdir(tmp_path, rows, commands=False)
  with pytest.raises(errors.InputError, match=r"ablate.json does not record its sweep .* --sweep="):
    sweep.publish(workdir, "old", str(tmp_path))
  directory = sweep.publish(workdir, "old", str(tmp_path), sweep_name="grid")
  summary = store.read_json(os.path.join(directory, "summary.json"))
  assert summary["inputs"]["seeds"] == [0, 1, 2]  # The seeds of the sweep's rows, as no command recorded them.
  assert summary["inputs"]["config"] == "config.py" and summary["inputs"]["commands"] == []
  with open(os.path.join(directory, "table.md")) as f:
    line = f.read().splitlines()[-1]
  assert line == ("Measured by a command not recorded (its settings: `config.py:smoke`, sweep `grid`, "
                  "`--override=total_steps=400`): 4 of 6 runs ok, 1 failed, 50–120 s each; commit: not recorded; "
                  "date: not recorded; machine: not recorded.")


def test_publish_names_what_is_wrong(tmp_path):
  with pytest.raises(errors.InputError, match=r"--sweep_dir=.* has no ablate.json and results.csv: give the --workdir"):
    sweep.publish(str(tmp_path), "x", str(tmp_path))
  workdir = _workdir(tmp_path, ROWS)
  with pytest.raises(errors.InputError, match=r"--name='a b': an experiment's name is letters"):
    sweep.publish(workdir, "a b", str(tmp_path))
  with pytest.raises(errors.ConfigError, match=r"Unknown sweep 'gird'"):
    sweep.publish(workdir, "x", str(tmp_path), sweep_name="gird")
