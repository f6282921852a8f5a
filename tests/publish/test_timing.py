"""README's commands as experiments.time_readme finds and times them, and their published timing table."""
import json
import os
import re

import pytest

from experiments import time_readme
from mmjax import errors
from mmjax.publish import timing

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(wall_s, date, exit_code=0, **extra):
  return {"readme_command": "test", "command": "pip install -r requirements.txt && pytest", "wall_s": wall_s,
          "user_s": 700.0, "sys_s": 80.0, "exit_code": exit_code, "tests_passed": 709, "pytest_s": wall_s - 80,
          "load_before": 0.25, "fresh_venv": True, "measured_by": "python -m experiments.time_readme --command=test",
          "commit": "0123456789abcdef0123456789abcdef01234567", "date": date, "machine": "AMD EPYC, 2 cores", **extra}


def test_the_readme_test_command_is_what_ci_runs():
  with open(os.path.join(REPO, "README.md")) as f:
    commands = time_readme.readme_commands(f.read())
  with open(os.path.join(REPO, ".ci", "run")) as f:
    assert commands["test"] == f.read().strip().splitlines()[-1]
  assert re.match(r"pip install uv==[\d.]+ && uv pip install .* -r requirements.txt && python -m experiments.train ",
                  commands["main"])


def test_readme_without_the_section_is_a_clear_error():
  with pytest.raises(errors.InputError, match="Two commands"):
    time_readme.readme_commands("# mmjax\n\n```bash\npytest\n```\n")


def test_pytest_summary_reads_the_last_summary_line():
  output = "tests/a.py ....\n== 3 passed in 1.00s ==\nmore\n===== 709 passed, 2 warnings in 393.12s (0:06:33) =====\n"
  assert time_readme.pytest_summary(output) == (709, 393.12)
  assert time_readme.pytest_summary("== 1 failed, 708 passed in 400.50s ==\n") == (708, 400.5)
  assert time_readme.pytest_summary("ruff: 1 error\n") == (None, None)


def test_publish_accumulates_runs_and_the_median_counts_only_passing_runs_of_the_current_command(tmp_path):
  first, second = tmp_path / "a.txt", tmp_path / "b.txt"
  first.write_text("noise\n" + json.dumps(_run(900.0, "2026-12-01T00:00:00Z", command="pip install old && pytest"))
                   + "\n" + json.dumps(_run(471.0, "2026-12-01T01:00:00Z")) + "\n")
  second.write_text(json.dumps(_run(500.0, "2026-12-01T05:00:00Z")) + "\n"
                    + json.dumps(_run(90.0, "2026-12-01T06:00:00Z", exit_code=1, tests_passed=None)) + "\n")
  directory = timing.publish(str(first), "readme_test", str(tmp_path))
  directory = timing.publish(str(second), "readme_test", str(tmp_path))
  timing.publish(str(second), "readme_test", str(tmp_path))  # The same runs again are not added twice.
  runs = timing.read_runs(os.path.join(directory, timing.RUNS_FILE))
  assert [run["wall_s"] for run in runs] == [900.0, 471.0, 500.0, 90.0]
  with open(os.path.join(directory, "summary.json")) as f:
    summary = json.load(f)
  assert (summary["median_wall_s"], summary["runs"], summary["runs_of_command"], summary["passed"],
          summary["latest_wall_s"]) == (485.5, 4, 3, 2, 90.0)
  with open(os.path.join(directory, "table.md")) as f:
    table = f.read()
  assert "| 2026-12-01 00:00 | `0123456789ab` | 900 | 820 | 709 | 700 | 0.2 | ok, earlier command |" in table
  assert "| 2026-12-01 01:00 | `0123456789ab` | 471 | 391 | 709 | 700 | 0.2 | ok |" in table
  assert "| 90 | 10 | — | 700 | 0.2 | failed (exit 1) |" in table
  assert ("Latest run: 90 s (failed (exit 1)) at `0123456789ab`. Median wall time of the 2 runs of this command "
          "that passed: 486 s. Rows marked \"earlier command\" (1) ran an earlier form of it") in table


def test_publish_refuses_to_mix_the_two_commands(tmp_path):
  test_run, main_run = tmp_path / "t.txt", tmp_path / "m.txt"
  test_run.write_text(json.dumps(_run(471.0, "2026-12-01T01:00:00Z")) + "\n")
  main_run.write_text(json.dumps(_run(400.0, "2026-12-01T02:00:00Z", readme_command="main")) + "\n")
  timing.publish(str(test_run), "readme", str(tmp_path))
  with pytest.raises(errors.InputError, match="publish them under different names"):
    timing.publish(str(main_run), "readme", str(tmp_path))
  both = tmp_path / "both.txt"
  both.write_text(test_run.read_text() + main_run.read_text())
  with pytest.raises(errors.InputError, match="one command"):
    timing.read_runs(str(both))
