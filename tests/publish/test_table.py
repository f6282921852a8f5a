"""A script's table published as it printed it (classify_photos' own run: tests/experiments/test_scripts.py)."""
import json

import pytest

from mmjax import errors
from mmjax.publish import table


def test_a_table_line_is_published_with_its_note_command_and_provenance(tmp_path):
  run = {"table": table.record(["photo", "top-1"], [["coffee", "espresso 95.1%"], ["rocket", "missile 27.2%"]],
                               "Two photos."),
         "commit": "0123456789abcdef0123456789abcdef01234567", "date": "2026-12-01T03:00:00Z",
         "machine": "AMD EPYC, 2 cores", "command": "python -m experiments.classify_photos --top_k=1 --json"}
  output = tmp_path / "out.txt"
  output.write_text("coffee (400×600):\n" + json.dumps({"table": "not one"}) + "\n" + json.dumps(run) + "\n")
  directory = table.publish(str(output), "photos", str(tmp_path))
  assert (tmp_path / "experiments" / "results" / "photos" / "table.md").read_text() == (
      "| photo | top-1 |\n|:--|:--|\n| coffee | espresso 95.1% |\n| rocket | missile 27.2% |\n\n"
      "Two photos. Measured by `python -m experiments.classify_photos --top_k=1 --json`; commit: `0123456789ab`; "
      "date: 2026-12-01 03:00 UTC; machine: AMD EPYC, 2 cores.\n")
  assert table.render(directory)["table.md"] == (tmp_path / "experiments/results/photos/table.md").read_text()


def test_rows_must_fit_the_columns_and_an_output_without_a_table_is_a_clear_error(tmp_path):
  with pytest.raises(ValueError, match="2 cells"):
    table.record(["a", "b"], [["1"]])
  output = tmp_path / "out.txt"
  output.write_text("no json here\n")
  with pytest.raises(errors.InputError, match="no JSON line with a \"table\""):
    table.read_run(str(output))
