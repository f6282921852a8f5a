"""Two local processes × 4 fake devices, joined through jax.distributed, train exactly like one
process × 8 devices: same loss at every step, same evals, and a checkpoint both wrote together
that one process restores."""
import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from mmjax import trainer
from tests.helpers import REPO, read_metrics, smoke_config

pytestmark = pytest.mark.slow

OVERRIDES = {"total_steps": 16, "log_every_steps": 1, "checkpoint_every_steps": 8, "mesh.data": 2, "mesh.fsdp": 4}


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _final_metrics(stdout: str) -> dict:
  return json.loads(stdout[stdout.index("{"):])


def test_two_processes_train_like_one(shapes_data_dir, tmp_path):
  workdir = str(tmp_path / "two_processes")
  flags = ["--config=configs/shapes_clip.py:smoke", f"--config.data.data_dir={shapes_data_dir}",
           f"--workdir={workdir}", "--num_processes=2", f"--coordinator_address=127.0.0.1:{_free_port()}"]
  flags += [f"--config.{key}={value}" for key, value in OVERRIDES.items()]
  env = dict(os.environ, PYTHONPATH=REPO, XLA_FLAGS="--xla_force_host_platform_device_count=4")
  processes = [subprocess.Popen([sys.executable, "-m", "experiments.train", *flags, f"--process_id={index}"],
                                cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for index in range(2)]
  outputs = [process.communicate(timeout=600) for process in processes]
  for process, (stdout, stderr) in zip(processes, outputs):
    assert process.returncode == 0, f"{stdout[-2000:]}\n{stderr[-5000:]}"
  assert "Process 1 of 2: 4 local devices, 8 in total." in outputs[1][1]
  two = [_final_metrics(stdout) for stdout, _ in outputs]
  assert two[0] == two[1], "both processes must report the same final evals"

  assert jax.device_count() == 8
  config = smoke_config(shapes_data_dir, **OVERRIDES)
  one_workdir = str(tmp_path / "one_process")
  one = trainer.train(config, one_workdir)

  losses_two = np.array([r["train/loss"] for r in read_metrics(workdir) if "train/loss" in r])
  losses_one = np.array([r["train/loss"] for r in read_metrics(one_workdir) if "train/loss" in r])
  assert len(losses_two) == len(losses_one) == OVERRIDES["total_steps"]
  relative = np.abs(losses_two - losses_one) / np.abs(losses_one)
  print(f"losses, 2 processes vs 1: max relative difference {relative.max():.2e} over {len(relative)} steps")
  np.testing.assert_allclose(losses_two, losses_one, rtol=1e-5)
  assert losses_one[-1] < losses_one[0]
  for key, value in one.items():
    assert two[0][key] == pytest.approx(value, abs=0.01), key

  # The checkpoint the two processes wrote together restores, whole, in one process.
  restored = trainer.evaluate(config, workdir)
  assert restored["step"] == OVERRIDES["total_steps"]
  for key, value in two[0].items():
    if key != "workdir":
      assert restored[key] == pytest.approx(value, abs=1e-6), key
