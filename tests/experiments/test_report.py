"""README.md and docs/*.md hold exactly the tables the committed measurements give, and experiments/report.py's
command line (a Python start each: the script imports no JAX)."""
import json
import re
import subprocess
import sys

import pytest

from mmjax import publish
from tests.helpers import REPO


def test_readme_and_docs_sections_equal_what_the_committed_results_give():
  """The repository's own check: every results table (and summary.json) made again from its results.csv or
  benchmark.jsonl, and every marked section of README.md and docs/*.md, equal to what is committed."""
  differences = publish.sync(REPO, check=True)
  assert differences == [], "run python -m experiments.report --sync; differs: " + "; ".join(differences)


def _report(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", "experiments.report", *args], cwd=REPO, capture_output=True,
                        text=True, timeout=120)


@pytest.mark.parametrize("args,message", [
    ([], r"Give one of --sweep_dir, --benchmark_json, --timing_json, --table_json or --sync \(got none\)\."),
    (["--sync", "--sweep_dir=x"], r"Give one of .* \(got \['--sweep_dir', '--sync'\]\)\."),
    (["--check"], r"Give one of"),
    (["--sweep_dir=x", "--check"], r"--check goes with --sync\."),
    (["--benchmark_json=x"], r"--benchmark_json needs --name=<experiment>"),
])
def test_bad_command_lines_are_one_error_line(args, message):
  result = _report(*args)
  assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
  errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
  assert len(errors) == 1 and re.search(message, errors[0]), result.stderr


def test_publish_sync_and_check_from_the_command_line(tmp_path):
  (tmp_path / "bench.txt").write_text(json.dumps({"benchmark": "train", "steps_per_s": 2.0}) + "\n")
  (tmp_path / "README.md").write_text("<!-- results: speed -->\n<!-- /results: speed -->\n")
  root = f"--root={tmp_path}"
  result = _report(f"--benchmark_json={tmp_path / 'bench.txt'}", "--name=speed", root)
  assert result.returncode == 0 and result.stdout.startswith(
      "experiments/results/speed: benchmark.jsonl, summary.json, table.md."), result.stderr
  result = _report("--sync", "--check", root)
  assert result.returncode == 1 and result.stderr.splitlines() == [
      "differs: README.md, section speed (experiments/results/speed/table.md)",
      "error: README.md/docs sections or results tables differ from the committed measurements: run python -m "
      "experiments.report --sync."]
  assert _report("--sync", root).stdout == "rewrote README.md, section speed (experiments/results/speed/table.md)\n"
  result = _report("--sync", "--check", root)
  assert result.returncode == 0 and "match the published measurements" in result.stdout
  assert "| steps/s | 2.000 |" in (tmp_path / "README.md").read_text()
