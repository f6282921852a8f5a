"""experiments/benchmark.py runs at a tiny size and reports every figure it promises."""
import json

from configs import bench_clip_s, shapes_caption
from experiments import benchmark
from mmjax import publish


def test_decode_benchmark_smoke():
  result = benchmark.decode_benchmark(shapes_caption.get_config("smoke"), batch_size=2, lengths=[2, 4], repeats=1)
  assert [row["new_tokens"] for row in result["rows"]] == [2, 4]
  for row in result["rows"]:
    for name in ("cached", "uncached"):
      assert row[f"{name}_tokens_per_s"] > 0 and row[f"{name}_ms_per_token"] > 0
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
