"""1 device equals 8 sharded devices. (Resume: test_fault_injection.py; bad configs: test_bad_inputs.py.)"""
import jax
import numpy as np
import pytest

from mmjax import trainer
from tests.helpers import read_metrics, smoke_config

pytestmark = pytest.mark.slow


def test_one_device_equals_eight_sharded_devices(shapes_data_dir, tmp_path):
  assert jax.device_count() == 8
  losses = {}
  for name, devices, mesh in (("1", jax.devices()[:1], {"data": -1, "fsdp": 1}),
                              ("8", jax.devices(), {"data": 2, "fsdp": 4})):
    config = smoke_config(shapes_data_dir, total_steps=20, log_every_steps=1,
                          checkpoint_every_steps=20)
    config.mesh = mesh
    config.evals = {}
    workdir = str(tmp_path / name)
    trainer.train(config, workdir, devices=devices)
    losses[name] = np.array([r["train/loss"] for r in read_metrics(workdir)])
  relative = np.abs(losses["8"] - losses["1"]) / np.abs(losses["1"])
  print(f"max relative loss difference over 20 steps, 1 vs 8 devices: {relative.max():.2e}")
  assert relative[-1] <= 1e-4, relative
  assert losses["1"][-1] < losses["1"][0]
