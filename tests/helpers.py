"""Helpers shared by tests that train."""
import json
import os
import subprocess
import sys

import ml_collections

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def smoke_config(data_dir: str, module=None, **overrides) -> ml_collections.ConfigDict:
  """`module`'s (default configs/shapes_clip.py) smoke config on the test dataset, with
  `overrides` ("a.b": value) applied."""
  from configs import shapes_clip

  config = (module or shapes_clip).get_config("smoke")
  config.data.data_dir = data_dir
  for key, value in overrides.items():
    config.update_from_flattened_dict({key: value})
  return config


def read_metrics(workdir: str) -> list[dict]:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def run_module(module: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
  """Runs `python -m module args` from the repo root, failing with its output if it fails."""
  result = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, env=dict(os.environ, PYTHONPATH=REPO))
  assert result.returncode == 0, f"{module} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
  return result
