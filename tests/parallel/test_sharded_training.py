"""Sharded training (data, fsdp and model axes at once) equals one device, and 2 processes × 4 devices (joined
through jax.distributed) equal 1 process × 8 devices. (Resume: test_fault_injection.py; bad
configs: test_bad_inputs.py.)

The runs are cached per mesh and the tests share one xdist worker, so the 1-device reference
and the 8-device run the two-process run is compared with are each trained once.
"""
import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from mmjax import trainer
from mmjax.parallel import sharding
from tests.helpers import REPO, read_metrics, smoke_config, xla_flags

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("sharding")]

# The evals (of the two-process run) on parts of the splits: the same gathering code, less to evaluate.
OVERRIDES = {"total_steps": 10, "log_every_steps": 1, "checkpoint_every_steps": 10, "optim.warmup_steps": 2,
             "evals.test.split": "test[:128]", "evals.heldout.split": "heldout[:128]",
             "evals.zeroshot_colour.split": "test[:256]"}
ONE_DEVICE = {"data": 1, "fsdp": 1, "model": 1}
MIXED = {"data": 2, "fsdp": 2, "model": 2}
_losses_by_mesh = {}


def _train_losses(data_dir: str, workdir_root, mesh: dict) -> np.ndarray:
  """Train losses of the smoke config on `mesh` (1 device or all 8), trained once per session."""
  key = tuple(mesh.items())
  if key not in _losses_by_mesh:
    config = smoke_config(data_dir, **OVERRIDES)
    config.mesh, config.evals = mesh, {}
    workdir = str(workdir_root.mktemp("run"))
    trainer.train(config, workdir, devices=jax.devices()[:1] if mesh == ONE_DEVICE else jax.devices())
    _losses_by_mesh[key] = np.array([r["train/loss"] for r in read_metrics(workdir)])
  return _losses_by_mesh[key]


def test_sharded_training_equals_one_device(shapes_data_dir, tmp_path_factory):
  """All three axes at once, the mesh the two-process run also uses: data parallelism, ZeRO-3 (weights and Adam
  moments split over `fsdp`) and tensor parallelism."""
  assert jax.device_count() == 8
  reference = _train_losses(shapes_data_dir, tmp_path_factory, ONE_DEVICE)
  losses = _train_losses(shapes_data_dir, tmp_path_factory, MIXED)
  relative = np.abs(losses - reference) / np.abs(reference)
  print(f"mesh {MIXED}: max relative loss difference over {len(losses)} steps vs 1 device: {relative.max():.2e}")
  assert len(losses) == OVERRIDES["total_steps"]
  np.testing.assert_allclose(losses, reference, rtol=1e-4)
  assert reference[-1] < reference[0]


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _final_metrics(stdout: str) -> dict:
  return json.loads(stdout[stdout.index("{"):])


def test_two_processes_train_like_one(shapes_data_dir, tmp_path, tmp_path_factory):
  """Same loss at every step as 1 process × 8 devices on the same mesh; each process reports the
  same final evals; and the checkpoint both wrote together restores, whole, in one process,
  which evaluates it to the same figures (so multi-process evaluation gathers correctly)."""
  workdir = str(tmp_path / "two_processes")
  flags = ["--config=configs/shapes_clip.py:smoke", f"--config.data.data_dir={shapes_data_dir}",
           f"--workdir={workdir}", "--num_processes=2", f"--coordinator_address=127.0.0.1:{_free_port()}",
           "--verbosity=0"]
  overrides = {**OVERRIDES, **{f"mesh.{axis}": size for axis, size in MIXED.items()}}
  flags += [f"--config.{key}={value}" for key, value in overrides.items()]
  env = dict(os.environ, XLA_FLAGS=xla_flags(4))
  processes = [subprocess.Popen([sys.executable, "-m", "experiments.train", *flags, f"--process_id={index}"],
                                cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for index in range(2)]
  outputs = [process.communicate(timeout=600) for process in processes]
  for process, (stdout, stderr) in zip(processes, outputs):
    assert process.returncode == 0, f"{stdout[-2000:]}\n{stderr[-5000:]}"
  assert "Process 1 of 2: 4 local devices, 8 in total." in outputs[1][1]  # Logged at INFO: --verbosity=0.
  two = [_final_metrics(stdout) for stdout, _ in outputs]
  assert two[0] == two[1], "both processes must report the same final evals"

  losses_two = np.array([r["train/loss"] for r in read_metrics(workdir) if "train/loss" in r])
  losses_one = _train_losses(shapes_data_dir, tmp_path_factory, MIXED)
  relative = np.abs(losses_two - losses_one) / np.abs(losses_one)
  print(f"losses, 2 processes × 4 devices vs 1 × 8: max relative difference {relative.max():.2e} "
        f"over {len(relative)} steps")
  assert len(losses_two) == OVERRIDES["total_steps"]
  np.testing.assert_allclose(losses_two, losses_one, rtol=1e-5)

  config = smoke_config(shapes_data_dir, **OVERRIDES)
  config.mesh = MIXED
  restored = trainer.evaluate(config, workdir)
  assert restored["step"] == OVERRIDES["total_steps"]
  for key, value in two[0].items():
    if key != "workdir":
      assert restored[key] == pytest.approx(value, abs=1e-6), key


def test_rules_split_heads_and_hidden_units_over_model_and_embed_over_fsdp(shapes_data_dir):
  """The layout the rules promise, read off the state the trainer builds."""
  config = smoke_config(shapes_data_dir)
  config.mesh = MIXED
  run = trainer.build_run(config)
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
