"""README/docs sections between results markers: replaced by the published tables (idempotent, nothing else
touched), checked without writing, a hand-edited table caught, a missing results directory a clear error."""
import json
import os
import textwrap

import pytest

from mmjax import errors, publish
from mmjax.publish import benchmark, markers

README = textwrap.dedent("""\
    # Project

    Speed, typed by hand once:

    <!-- results: speed -->
    | steps/s | 9.99 |
    <!-- /results: speed -->

    Text after it, with a `<!-- results: speed -->` inside code that is no marker.
    """)
DOC = "Intro.\n<!-- results: speed -->\n<!-- /results: speed -->\nEnd.\n"


def _repo(tmp_path) -> str:
  """A repository with a published benchmark `speed`, README.md and docs/speed.md including it."""
  (tmp_path / "bench.txt").write_text(json.dumps({"benchmark": "train", "steps_per_s": 1.5, "batch_size": 8}) + "\n")
  benchmark.publish(str(tmp_path / "bench.txt"), "speed", str(tmp_path))
  (tmp_path / "README.md").write_text(README)
  (tmp_path / "docs").mkdir()
  (tmp_path / "docs" / "speed.md").write_text(DOC)
  return str(tmp_path)


def _read(path) -> str:
  with open(path) as f:
    return f.read()


def test_sync_replaces_each_section_by_its_table_and_nothing_else(tmp_path):
  root = _repo(tmp_path)
  table = _read(os.path.join(root, "experiments", "results", "speed", "table.md"))
  assert publish.documents(root) == [os.path.join(root, "README.md"), os.path.join(root, "docs", "speed.md")]
  differing = ["README.md, section speed (experiments/results/speed/table.md)",
               "docs/speed.md, section speed (experiments/results/speed/table.md)"]
  assert publish.sync(root, check=True) == differing
  assert _read(os.path.join(root, "README.md")) == README  # --check writes nothing.
  assert publish.sync(root) == differing
  readme = _read(os.path.join(root, "README.md"))
  assert readme == README.replace("| steps/s | 9.99 |\n", f"\n{table}\n")
  assert _read(os.path.join(root, "docs", "speed.md")) == DOC.replace("-->\n<!--", f"-->\n\n{table}\n<!--")
  assert publish.sync(root) == [] and publish.sync(root, check=True) == []  # Idempotent.
  assert _read(os.path.join(root, "README.md")) == readme
  assert publish.replace_sections(readme, {"speed": table}) == readme


def test_check_catches_an_edited_section_and_a_hand_edited_table(tmp_path):
  root = _repo(tmp_path)
  publish.sync(root)
  table_path = os.path.join(root, "experiments", "results", "speed", "table.md")
  with open(table_path, "a") as f:
    f.write("A figure typed by hand.\n")
  readme = _read(os.path.join(root, "README.md")).replace("1.500", "1.600")
  (tmp_path / "README.md").write_text(readme)
  assert publish.sync(root, check=True) == [
      "experiments/results/speed/table.md (made again from its measurements)",
      "README.md, section speed (experiments/results/speed/table.md)"]
  assert _read(os.path.join(root, "README.md")) == readme
  assert publish.sync(root) and publish.sync(root, check=True) == []
  assert "typed by hand" not in _read(table_path) and "1.500" in _read(os.path.join(root, "README.md"))


def test_a_marker_without_results_or_without_its_end_is_a_one_line_error(tmp_path):
  root = _repo(tmp_path)
  (tmp_path / "docs" / "more.md").write_text("<!-- results: headline_clip -->\n<!-- /results: headline_clip -->\n")
  with pytest.raises(errors.InputError, match=(
      r"^docs/more.md: <!-- results: headline_clip --> names experiments/results/headline_clip, which holds no "
      r"published results: run python -m experiments.report --sweep_dir=<the ablate --workdir> "
      r"--name=headline_clip \(or --benchmark_json=<the benchmark's output>, "
      r"--timing_json=<experiments.time_readme's output> or --table_json=<a script's --json output> "
      r"--name=headline_clip\)\.$")):
    publish.sync(root, check=True)
  assert _read(os.path.join(root, "README.md")) == README  # Nothing written before the error.
  (tmp_path / "docs" / "more.md").write_text("a\n<!-- results: speed -->\n| x |\n<!-- /results: sped -->\n")
  with pytest.raises(errors.InputError, match=r"more.md:2: <!-- results: speed --> has no <!-- /results: speed -->"):
    publish.sync(root)
  (tmp_path / "experiments" / "results" / "speed" / "summary.json").write_text("{}")
  os.remove(tmp_path / "docs" / "more.md")
  with pytest.raises(errors.InputError, match=r"speed/summary.json cannot be read as published results .* publish "
                                              r"it again with python -m experiments.report"):
    markers.sync(root)
