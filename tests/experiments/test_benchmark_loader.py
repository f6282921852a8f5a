"""experiments/benchmark_loader.py: the loader against the step, on a smoke config, printed and published."""
import json

import pytest

from configs import av_digits
from experiments import benchmark_loader
from mmjax import errors, publish


def test_loader_benchmark_smoke(av_digits_data_dir):
  """Every figure is positive, the ratio is the medians' ratio, and the table shows the run. The text-only model:
  its step compiles fastest, and the loader reads every modality all the same."""
  config = av_digits.get_config("smoke,fusion=text_only")
  config.data.data_dir = av_digits_data_dir
  result = benchmark_loader.loader_benchmark(config, rounds=3, window_s=0.0, name="configs/av_digits.py:smoke")
  assert result["benchmark"] == "loader" and (result["dataset"], result["variant"]) == ("av_digits", "redundant_small")
  for key in ("loader_examples_per_s", "step_examples_per_s", "first_batches_s"):
    assert result[key] > 0, key
  assert len(result["loader_examples_per_s_rounds"]) == len(result["step_examples_per_s_rounds"]) == 3
  assert sorted(result["loader_examples_per_s_rounds"])[1] == result["loader_examples_per_s"]
  assert result["loader_over_step"] == result["loader_examples_per_s"] / result["step_examples_per_s"]
  assert json.loads(json.dumps(result)) == result
  table = publish.benchmark_table([result])
  row = "| configs/av_digits.py:smoke | av_digits | redundant_small | classification | 64 | 0 |"
  assert f"{row} {result['loader_examples_per_s']:,.0f} |" in table
  summary = publish.benchmark.summarize("loaders", [result, result])
  assert summary["rows"][1]["loader_over_step"] == result["loader_over_step"]
  with pytest.raises(errors.ConfigError, match="loader_rounds=0"):
    benchmark_loader.loader_benchmark(config, rounds=0)
