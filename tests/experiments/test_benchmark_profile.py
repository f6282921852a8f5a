"""experiments/benchmark_profile.py: the FLOPs it reads off compiled HLO, the wall-time split, and a traced step."""
import jax
import jax.numpy as jnp
import pytest

from configs import bench_clip_s
from experiments import benchmark, benchmark_profile
from mmjax import publish


def test_operations_count_a_matmuls_flops_from_the_compiled_hlo():
  """A compiled [8, 16] @ [16, 4] matmul is 2·8·4·16 FLOPs, whether XLA leaves it a dot or fuses it."""
  compiled = jax.jit(lambda a, b: jnp.tanh(a @ b)).lower(jnp.ones((8, 16)), jnp.ones((16, 4))).compile()
  matmuls = [op for op in benchmark_profile.operations(compiled.as_text()).values() if op["flops"] is not None]
  assert [op["flops"] for op in matmuls] == [2 * 8 * 4 * 16]


def _event(op, start, duration):
  return {"ts": start, "dur": duration, "args": {"hlo_op": op}}


def test_timeline_splits_the_wall_by_what_ran():
  """0–10 one matmul; 10–15 two; 15–20 a matmul beside other work; 20–25 other only; 25–30 nothing; 30–40 one."""
  events = [_event("dot.1", 0, 20), _event("dot.2", 10, 5), _event("add.1", 15, 10), _event("dot.3", 30, 10)]
  split = benchmark_profile.timeline(events, lambda op: op.startswith("dot"))
  assert split == {"one matmul": 20, "two or more matmuls": 5, "matmul beside other work": 5, "other work only": 5,
                   "nothing": 5}


def test_profile_of_the_smoke_step(shapes_data_dir, tmp_path):
  """The traced smoke step: its split adds up to the step, the matmuls have FLOPs and a rate, and the table shows
  every state."""
  config = bench_clip_s.get_config("smoke")
  config.data.data_dir = shapes_data_dir
  with benchmark.warm_train_step(config) as (compiled, state, batches, _):
    result = benchmark_profile.profile_benchmark(compiled, state, batches, steps=2, directory=str(tmp_path), top=5)
  assert set(result["timeline_ms"]) == set(benchmark_profile.STATES)
  assert result["step_ms"] == pytest.approx(sum(result["timeline_ms"].values()))
  assert result["matmul_gflop_per_step"] > 0 and result["matmul_gflops_while_running"] > 0
  assert len(result["top_operations"]) == 5 and result["operations_per_step"] > 5
  table = publish.benchmark_table([result])
  assert all(f"| {state} |" in table for state in benchmark_profile.STATES)
