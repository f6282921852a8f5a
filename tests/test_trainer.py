"""One device equals 8 sharded devices, on every mesh layout. (Two processes:
test_multiprocess.py; resume: test_fault_injection.py; bad configs: test_bad_inputs.py.)"""
import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from mmjax import sharding, trainer
from tests.helpers import read_metrics, smoke_config

pytestmark = pytest.mark.slow

STEPS = 10


def _train_losses(data_dir: str, workdir: str, mesh: dict, devices) -> np.ndarray:
  config = smoke_config(data_dir, total_steps=STEPS, log_every_steps=1, checkpoint_every_steps=STEPS,
                        **{"optim.warmup_steps": 2})
  config.mesh = mesh
  config.evals = {}
  trainer.train(config, workdir, devices=devices)
  return np.array([r["train/loss"] for r in read_metrics(workdir)])


@pytest.fixture(scope="module")
def one_device_losses(shapes_data_dir, tmp_path_factory) -> np.ndarray:
  return _train_losses(shapes_data_dir, str(tmp_path_factory.mktemp("one_device")),
                       {"data": 1, "fsdp": 1, "model": 1}, jax.devices()[:1])


@pytest.mark.parametrize("mesh", [{"data": 8, "fsdp": 1, "model": 1}, {"data": 1, "fsdp": 8, "model": 1},
                                  {"data": 4, "fsdp": 1, "model": 2}, {"data": 2, "fsdp": 2, "model": 2}],
                         ids=["data", "fsdp", "model", "mixed"])
def test_sharded_training_equals_one_device(shapes_data_dir, tmp_path, one_device_losses, mesh):
  assert jax.device_count() == 8
  losses = _train_losses(shapes_data_dir, str(tmp_path), mesh, jax.devices())
  relative = np.abs(losses - one_device_losses) / np.abs(one_device_losses)
  print(f"mesh {mesh}: max relative loss difference over {STEPS} steps vs 1 device: {relative.max():.2e}")
  assert len(losses) == STEPS
  np.testing.assert_allclose(losses, one_device_losses, rtol=1e-4)
  assert one_device_losses[-1] < one_device_losses[0]


def test_rules_split_heads_and_hidden_units_over_model_and_embed_over_fsdp(shapes_data_dir):
  """The layout the rules promise, read off the state the trainer builds."""
  config = smoke_config(shapes_data_dir)
  config.mesh = {"data": 2, "fsdp": 2, "model": 2}
  run = trainer._Run(config, "/tmp/unused_workdir")
  params = run.state_sharding.params
  block = params["image_encoder"]["encoder"]["block_0"]
  assert block["attn"]["query"]["kernel"].spec == P("fsdp", "model", None)
  assert block["attn"]["out"]["kernel"].spec == P("model", None, "fsdp")
  assert block["mlp"]["fc1"]["kernel"].spec == P("fsdp", "model")
  assert block["mlp"]["fc2"]["kernel"].spec == P("model", "fsdp")
  assert params["text_encoder"]["embed"]["embedding"]["embedding"].spec == P("model", "fsdp")
  # Adam's moments are laid out like the params.
  adam = run.state_sharding.opt_state[1][0]
  assert adam.mu["image_encoder"]["encoder"]["block_0"]["mlp"]["fc1"]["kernel"].spec == P("fsdp", "model")
  table = sharding.sharding_table(run.abstract.params)
  assert "['image_encoder']['encoder']['block_0']['mlp']['fc1']['kernel']" in table and "'model'" in table
