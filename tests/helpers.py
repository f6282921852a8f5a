"""Helpers shared by tests: smoke configs on the test dataset, a workdir's metrics, running a script, and
the ways a checkpoint step can be damaged."""
import json
import os
import pathlib
import subprocess
import sys

import ml_collections

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The XLA flags of every test process, whatever the device count: the user's own, then three that make XLA:CPU compile
# faster. About half the suite's time was compiling (in the pytest processes: 414 s of backend compiles and 133 s of
# tracing in 1,129 s of tests), and its models are tiny, so running them less optimised costs less than compiling them
# optimised. LLVM's backend optimisation level 0: the same programs compiled in about 60% of the time (the
# accumulation, composed-model and precision tests: 137 s → 83 s). XLA:CPU's older loop emitters instead of its MLIR
# fusion emitters, and one LLVM module per program instead of several compiled in parallel (which 2 cores cannot use):
# the accumulation and composed-model tests without a compilation cache in 47 s of CPU instead of 89 s, and the smoke
# train step as fast as before (~7.7 steps/s on 2 devices). Not for real runs: at XLA's default optimisation level the
# last two made the bench step compile in 17.6 s instead of 7.1 s.
BASE_XLA_FLAGS = " ".join([os.environ.get("XLA_FLAGS", ""), "--xla_backend_optimization_level=0",
                           "--xla_cpu_use_fusion_emitters=false", "--xla_cpu_parallel_codegen_split_count=1"]).strip()
# The pytest processes see 8 fake CPU devices; the scripts they start 2 (SCRIPT_DEVICES, in their environment),
# unless a test asks otherwise: a batch split over 2 devices is still sharded, and a step runs ~1.8× faster than
# over 8 fake devices on this 2-core machine (the smoke model: ~5.3 vs ~2.9 steps/s).
SCRIPT_DEVICES = 2


def xla_flags(device_count: int = SCRIPT_DEVICES) -> str:
  """XLA_FLAGS for a process with `device_count` fake CPU devices (1: none faked, as on a laptop)."""
  return " ".join([BASE_XLA_FLAGS, f"--xla_force_host_platform_device_count={device_count}"] if device_count > 1
                  else [BASE_XLA_FLAGS])


def smoke_config(data_dir: str, module=None, arg: str = "smoke", **overrides) -> ml_collections.ConfigDict:
  """`module`'s (default configs/shapes_clip.py) config for `arg` (default "smoke") on the test dataset, with
  `overrides` ("a.b": value) applied."""
  from configs import shapes_clip

  config = (module or shapes_clip).get_config(arg)
  config.data.data_dir = data_dir
  config.update_from_flattened_dict(overrides)
  return config


def image_caption_task(model: ml_collections.ConfigDict, tokenizer, method: str = "greedy", kv_cache: bool = True,
                       **decode):
  """The generation task over `model` (images → text), decoding with `method` and `decode` overrides of
  configs.common.decode() (length penalty 0, so beam search with beam 1 is greedy)."""
  from configs import common
  from mmjax import models, tasks

  decode_config = common.decode()
  decode_config.update(method=method, kv_cache=kv_cache, length_penalty=0.0, **decode)
  config = ml_collections.ConfigDict(dict(
      model=model, task=dict(name="generation", inputs={"image": "image"}, target="text"), decode=decode_config))
  return tasks.build(config, models.build(config.model), tokenizer)


def read_metrics(workdir: str) -> list[dict]:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def run_module(module: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
  """Runs `python -m module args` from the repo root, failing with its output if it fails."""
  result = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)
  assert result.returncode == 0, f"{module} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
  return result


def _files(step_dir: pathlib.Path) -> list[pathlib.Path]:
  return sorted(p for p in step_dir.rglob("*") if p.is_file())


def _truncate_largest_data_file(step_dir: pathlib.Path) -> None:
  largest = max((p for p in _files(step_dir / "state") if "METADATA" not in p.name), key=lambda p: p.stat().st_size)
  largest.write_bytes(largest.read_bytes()[: largest.stat().st_size // 2])


def _zero_fill_metadata(step_dir: pathlib.Path) -> None:
  for path in _files(step_dir):
    if "METADATA" in path.name:
      path.write_bytes(b"\0" * path.stat().st_size)


def _empty_step_dir(step_dir: pathlib.Path) -> None:
  for path in sorted(step_dir.rglob("*"), key=lambda p: len(p.parts), reverse=True):
    path.unlink() if path.is_file() else path.rmdir()


# Ways a checkpoint step directory gets damaged (a crash mid-write, a full disk, a bad copy).
CORRUPTIONS = {
    "truncated data file": _truncate_largest_data_file,
    "zero-filled metadata": _zero_fill_metadata,
    "empty step directory": _empty_step_dir,
}
