"""experiments/benchmark.py runs at a tiny size and reports every figure it promises."""
import json

from configs import bench_clip_s, shapes_caption
from experiments import benchmark, benchmark_scaling
from mmjax import publish


def test_decode_benchmark_smoke():
  """Every length is timed once per round, cached and uncached; each figure is the median of its rounds with
  quartiles and min-max around it."""
  result = benchmark.decode_benchmark(shapes_caption.get_config("smoke"), batch_size=2, lengths=[2, 4], repeats=3)
  assert [row["new_tokens"] for row in result["rows"]] == [2, 4] and result["repeats"] == 3
  for row in result["rows"]:
    for name in ("cached", "uncached"):
      ms = sorted(1000 * seconds / row["new_tokens"] for seconds in row[f"{name}_seconds"])
      assert len(ms) == 3 and ms[0] > 0
      assert row[f"{name}_ms_per_token"] == ms[1] and row[f"{name}_tokens_per_s"] == 2 * 1000 / ms[1]
      assert [row[f"{name}_ms_per_token_{stat}"] for stat in ("min", "max")] == [ms[0], ms[2]]
      assert ms[0] <= row[f"{name}_ms_per_token_q1"] <= ms[1] <= row[f"{name}_ms_per_token_q3"] <= ms[2]
  assert result["cached_ms_per_token_4_over_2"] > 0 and result["cached_speedup_at_4"] > 0
  assert json.loads(json.dumps(result)) == result
  assert "| new tokens |" in publish.benchmark_table([result])


def test_train_benchmark_smoke(shapes_data_dir):
  """The smoke-sized train benchmark reports every promised figure, positive, and prints them as JSON last."""
  config = bench_clip_s.get_config("smoke")
  config.data.data_dir = shapes_data_dir
  result = benchmark.train_benchmark(config)
  promised = ("steps_per_s", "examples_per_s", "gflop_per_step", "peak_matmul_gflops", "mfu", "compile_s",
              "peak_rss_mb", "analytic_gflop_per_step", "loader_examples_per_s", "loader_over_training")
  for key in promised:
    assert result[key] > 0, key
  assert "| MFU |" in publish.benchmark_table([result])
  assert json.loads(json.dumps(result)) == result


def test_scaling_benchmark_smoke(shapes_data_dir):
  """A row per batch size of the config's model, then per model variant with its tower changes applied: each row
  times a step of that size (the analytic FLOPs grow with the batch and the width), and the table shows every row."""
  config = bench_clip_s.get_config("smoke")
  config.data.data_dir = shapes_data_dir
  result = benchmark_scaling.scaling_benchmark(config, benchmark.train_benchmark)
  rows = result["rows"]
  assert [(row["model"], row["batch_size"], row["width"]) for row in rows] == [("base", 8, 32), ("base", 16, 32),
                                                                              ("wide", 8, 64)]
  assert rows[1]["analytic_gflop_per_step"] > rows[0]["analytic_gflop_per_step"]
  assert rows[2]["analytic_gflop_per_step"] > rows[0]["analytic_gflop_per_step"]
  assert rows[2]["params"] > rows[0]["params"]
  for row in rows:
    assert row["steps_per_s"] > 0 and row["mfu"] > 0
    assert abs(row["ms_per_example"] - 1000 / row["examples_per_s"]) < 1e-9
  table = publish.benchmark_table([result])
  assert "| ms/example |" in table and table.count("| base |") == 2 and "| wide |" in table
  assert json.loads(json.dumps(result)) == result
