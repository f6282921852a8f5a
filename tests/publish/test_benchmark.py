"""The benchmark's tables (printed and published) and publishing its JSON lines, on hand-made results."""
import json
import os
import textwrap

import pytest

from mmjax import errors
from mmjax.publish import benchmark, store


def _train(steps_per_s, **extra):
  return {"benchmark": "train", "steps_per_s": steps_per_s, "examples_per_s": 64 * steps_per_s, "mfu": 0.5,
          "params": 1234567, "batch_size": 64, "keep_freed_memory": True, **extra}


DECODE = {"benchmark": "decode", "batch_size": 32, "decoder": {"name": "transformer", "depth": 3},
          "rows": [{"new_tokens": 16, "cached_tokens_per_s": 4000.0, "cached_ms_per_token": 0.5,
                    "uncached_tokens_per_s": 1000.0, "uncached_ms_per_token": 2.0, "cached_first_call_s": 1.0,
                    "uncached_first_call_s": 1.0}]}


def test_train_table_of_one_run_and_of_several_with_their_median():
  assert benchmark.train_table([_train(0.875)]) == textwrap.dedent("""\
      | figure | value |
      |:--|--:|
      | batch size | 64 |
      | parameters | 1,234,567 |
      | steps/s | 0.875 |
      | examples/s | 56.0 |
      | MFU | 0.500 |
      | freed memory kept in malloc | yes |
      """)
  table = benchmark.train_table([_train(1.0), _train(4.0, compile_s=7.25), _train(2.0)])
  assert table.splitlines()[:2] == ["| figure | run 1 | run 2 | run 3 | median |", "|:--|--:|--:|--:|--:|"]
  assert "| steps/s | 1.000 | 4.000 | 2.000 | 2.000 |" in table
  assert "| compile s | — | 7.2 | — | 7.2 |" in table  # Missing in some runs: the median of those that have it.
  assert "| freed memory kept in malloc | yes | yes | yes |  |" in table


def test_decode_table():
  """The median ms/token with its quartiles and min–max; a run printed before the spread was recorded shows —."""
  spread = {"cached_ms_per_token_q1": 0.25, "cached_ms_per_token_q3": 0.75, "cached_ms_per_token_min": 0.125,
            "cached_ms_per_token_max": 1.5, "uncached_ms_per_token_q1": 1.5, "uncached_ms_per_token_q3": 2.5}
  measured = {**DECODE, "rows": [{**DECODE["rows"][0], **spread}]}
  assert benchmark.benchmark_table([measured]) == textwrap.dedent("""\
      | new tokens | cached ms/token, median | cached, quartiles | cached, min–max | uncached ms/token, median | \
uncached, quartiles | cached tok/s | speedup |
      |--:|--:|--:|--:|--:|--:|--:|--:|
      | 16 | 0.500 | 0.250–0.750 | 0.125–1.500 | 2.000 | 1.500–2.500 | 4000 | 4.0 |

      Greedy decoding of a random-weight decoder, batch 32, decoder name=transformer, depth=3.
      """)
  two = benchmark.decode_table([DECODE, measured])
  assert two.splitlines()[2:4] == ["| 1 | 16 | 0.500 | — | — | 2.000 | — | 4000 | 4.0 |",
                                   "| 2 | 16 | 0.500 | 0.250–0.750 | 0.125–1.500 | 2.000 | 1.500–2.500 | 4000 | 4.0 |"]


def test_publish_reads_the_json_lines_of_the_output_and_writes_summary_and_table(tmp_path):
  measured = {"commit": "0123456789abcdef0123456789abcdef01234567", "date": "2026-12-01T10:00:00Z",
              "machine": "AMD EPYC 7B13, 2 cores", "command": "python -m experiments.benchmark --config=c.py"}
  output = tmp_path / "bench.txt"
  output.write_text(benchmark.train_table([_train(1.0)]) + json.dumps(_train(1.0, **measured)) + "\nnoise\n"
                    + json.dumps(_train(3.0, **{**measured, "date": "2026-12-02T10:00:00Z"})) + "\n")
  directory = benchmark.publish(str(output), "bench", str(tmp_path))
  runs = benchmark.read_runs(os.path.join(directory, "benchmark.jsonl"))
  assert [run["steps_per_s"] for run in runs] == [1.0, 3.0]
  summary = store.read_json(os.path.join(directory, "summary.json"))
  assert summary["runs"] == 2 and summary["median"]["steps_per_s"] == 2.0 and summary["median"]["params"] == 1234567
  assert summary["commands"] == [measured["command"]]
  assert summary["provenance"]["dates"]["last"] == "2026-12-02T10:00:00Z"
  with open(os.path.join(directory, "table.md")) as f:
    table = f.read()
  assert table == benchmark.train_table(runs) + (
      "\nMeasured by `python -m experiments.benchmark --config=c.py`: 2 runs; commit: `0123456789ab`; "
      "date: 2026-12-01 10:00 – 2026-12-02 10:00 UTC; machine: AMD EPYC 7B13, 2 cores.\n")
  assert benchmark.render(directory) == {"summary.json": store.json_text(summary), "table.md": table}

  # A line printed before provenance was recorded: nothing invented.
  output.write_text(json.dumps(DECODE) + "\n")
  with open(os.path.join(benchmark.publish(str(output), "decode", str(tmp_path)), "table.md")) as f:
    assert f.read().splitlines()[-1] == ("Measured by a command not recorded: 1 run; commit: not recorded; "
                                         "date: not recorded; machine: not recorded.")


@pytest.mark.parametrize("text,message", [
    ("", r"holds no JSON line of python -m experiments.benchmark"),
    ('| x |\n{"steps_per_s": 1\n', r"bench.txt:2 is not a JSON line of experiments.benchmark"),
    ('{"steps_per_s": 1}\n',
     r'bench.txt:1 has no "benchmark": one of '
     r'\[\'decode\', \'loader\', \'memory\', \'profile\', \'scaling\', \'train\'\]'),
    ('{"benchmark": "train"}\n{"benchmark": "decode"}\n', r"runs of several benchmarks \['decode', 'train'\]"),
])
def test_bad_benchmark_output_is_one_line_naming_it(tmp_path, text, message):
  (tmp_path / "bench.txt").write_text(text)
  with pytest.raises(errors.InputError, match=message):
    benchmark.read_runs(str(tmp_path / "bench.txt"))
  with pytest.raises(errors.InputError, match=r"--benchmark_json=.*missing.txt: No such file"):
    benchmark.read_runs(str(tmp_path / "missing.txt"))
