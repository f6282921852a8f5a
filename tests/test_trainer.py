"""Resume equals an uninterrupted run; 1 device equals 8 sharded devices."""
import os
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from mmjax import trainer
from tests.helpers import read_metrics, smoke_config

pytestmark = pytest.mark.slow


def _params_at(workdir: str, step: int):
  with ocp.StandardCheckpointer() as ckpt:
    return ckpt.restore(os.path.join(workdir, "checkpoints", str(step), "state"))["params"]


def test_resume_equals_uninterrupted(shapes_data_dir, tmp_path):
  """Train 40 steps with a checkpoint at 20; drop step 40 and rerun: the resumed run restores
  step 20 and its data position and must end with bitwise identical parameters."""
  config = smoke_config(shapes_data_dir, total_steps=40, checkpoint_every_steps=20, log_every_steps=5)
  config.evals = {}
  workdir = str(tmp_path / "run")
  trainer.train(config, workdir)
  uninterrupted = _params_at(workdir, 40)
  losses_before = [r["train/loss"] for r in read_metrics(workdir)]

  shutil.rmtree(os.path.join(workdir, "checkpoints", "40"))
  trainer.train(config, workdir)
  resumed = _params_at(workdir, 40)
  jax.tree.map(np.testing.assert_array_equal, uninterrupted, resumed)
  rows = read_metrics(workdir)
  assert [r["step"] for r in rows] == list(range(5, 41, 5))  # No duplicated or missing steps.
  assert [r["train/loss"] for r in rows] == losses_before


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


def test_bad_batch_size_is_a_clear_error(shapes_data_dir, tmp_path):
  config = smoke_config(shapes_data_dir, batch_size=60)
  with pytest.raises(ValueError, match=r"config.batch_size=60 must be a positive multiple of the data-parallel"):
    trainer.train(config, str(tmp_path))
