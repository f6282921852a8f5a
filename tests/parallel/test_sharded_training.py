"""Sharded training (data, fsdp and model axes at once) equals one device, and 2 processes × 4 devices (joined
through jax.distributed, by flags and by SLURM detection) equal 1 process × 8 devices, also when they stop on a
SIGTERM and one process resumes. (Resume: test_fault_injection.py; bad configs: test_bad_inputs.py.)

The runs are cached per mesh and the tests share one xdist worker, so the 1-device reference
and the 8-device run the two-process run is compared with are each trained once.
"""
import os
import random
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from mmjax import trainer
from mmjax.parallel import sharding
from mmjax.trainer import faults
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


def _slurm_job_id() -> int:
  """A SLURM_JOB_ID whose coordinator port is free here: JAX's SlurmCluster listens on 61440 + job id % 4096."""
  for job_id in random.sample(range(4096), 4096):
    with socket.socket() as s:
      try:
        s.bind(("127.0.0.1", 61440 + job_id))
        return job_id
      except OSError:
        continue
  raise RuntimeError("no free port in 61440-65535")


def _train_two_processes(data_dir: str, workdir: str, joins: list[tuple[list[str], dict[str, str]]],
                         **overrides) -> list[tuple[str, str]]:
  """Runs experiments.train in two processes of 4 fake devices each on the MIXED mesh, the i-th joining the other
  by the flags and environment variables `joins[i]`; returns their (stdout, stderr) once both exit 0."""
  flags = ["--config=configs/shapes_clip.py:smoke", f"--config.data.data_dir={data_dir}", f"--workdir={workdir}",
           "--verbosity=0"]
  overrides = {**OVERRIDES, **{f"mesh.{axis}": size for axis, size in MIXED.items()}, **overrides}
  flags += [f"--config.{key}={value}" for key, value in overrides.items()]
  base = {key: value for key, value in os.environ.items() if not key.startswith(("JAX_COORDINATOR", "JAX_NUM_PROC",
                                                                                 "JAX_PROCESS_ID", "SLURM_"))}
  processes = [subprocess.Popen([sys.executable, "-m", "experiments.train", *flags, *join_flags], cwd=REPO,
                                env={**base, "XLA_FLAGS": xla_flags(4), **env}, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
               for join_flags, env in joins]
  outputs = [process.communicate(timeout=600) for process in processes]
  for process, (stdout, stderr) in zip(processes, outputs):
    assert process.returncode == 0, f"{stdout[-2000:]}\n{stderr[-5000:]}"
  return outputs


def test_two_processes_train_like_one_stop_together_and_resume_in_one(shapes_data_dir, tmp_path, tmp_path_factory,
                                                                       capsys):
  """Two processes join: process 0 through JAX's SLURM detection (--distributed_auto in the environment srun
  gives a task; it hosts the coordinator on the port SLURM_JOB_ID gives), process 1 by flags. A SIGTERM to
  process 1 during step 3 stops both after step 4, the next step, where they evaluate and save. One process then
  evaluates their checkpoint to the figures they logged (so multi-process evaluation gathers correctly), and
  resumes it with 8 devices to step 10: every loss equals the uninterrupted 1 process × 8 run's, so the joined
  processes trained like one and the step and data position carried over to another process count."""
  workdir = str(tmp_path / "two_processes")
  job_id = _slurm_job_id()
  slurm = {"SLURM_JOB_ID": str(job_id), "SLURM_STEP_NODELIST": "localhost", "SLURM_NTASKS": "2",
           "SLURM_PROCID": "0", "SLURM_LOCALID": "0"}
  by_flags = ["--num_processes=2", f"--coordinator_address=localhost:{61440 + job_id}", "--process_id=1"]
  evals_at_4 = {f"evals.{name}.every_steps": 4 for name in ("test", "heldout", "zeroshot_colour")}
  outputs = _train_two_processes(shapes_data_dir, workdir, [(["--distributed_auto"], slurm),
                                                            (by_flags, {faults.KILL_AT_ENV: "step:3:SIGTERM"})],
                                 **evals_at_4)
  for index, (_, stderr) in enumerate(outputs):  # Logged at INFO: --verbosity=0.
    assert f"Process {index} of 2: 4 local devices, 8 in total." in stderr, stderr[-3000:]
    assert "Stopped at step 4 on request" in stderr, stderr[-3000:]
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["4"]
  logged = {key: value for row in read_metrics(workdir) if row["step"] == 4 for key, value in row.items()
            if key.startswith("eval/")}

  config = smoke_config(shapes_data_dir, **OVERRIDES)
  config.mesh = MIXED
  restored = trainer.evaluate(config, workdir)
  assert restored["step"] == 4 and len(logged) > 3
  for key, value in logged.items():
    assert restored[key] == pytest.approx(value, abs=1e-6), key

  config.evals = {}  # Resume-safe.
  trainer.train(config, workdir)
  assert f"Resumed from step 4 of {workdir}." in capsys.readouterr().err
  losses = np.array([r["train/loss"] for r in read_metrics(workdir) if "train/loss" in r])
  reference = _train_losses(shapes_data_dir, tmp_path_factory, MIXED)
  relative = np.abs(losses - reference) / np.abs(reference)
  print(f"losses, 2 processes × 4 devices to step 4 then 1 × 8 to step 10, vs 1 × 8 throughout: max relative "
        f"difference {relative[:4].max():.2e} (steps 1-4), {relative[4:].max():.2e} (steps 5-10)")
  assert len(losses) == OVERRIDES["total_steps"]
  np.testing.assert_allclose(losses, reference, rtol=1e-5)


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
