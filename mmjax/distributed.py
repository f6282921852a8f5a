"""Joining a multi-process (multi-host) run through `jax.distributed`, from flags or environment.

Every process runs the same command. On one machine, for example two processes:

  python -m experiments.train ... --coordinator_address=127.0.0.1:12345 --num_processes=2 --process_id=0
  python -m experiments.train ... --coordinator_address=127.0.0.1:12345 --num_processes=2 --process_id=1

The flags default to the environment variables JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and
JAX_PROCESS_ID, so a launcher can set those instead. On Cloud TPU pods, SLURM or Open MPI,
`--distributed_auto` lets JAX detect all three.
"""
import logging
import os

from absl import flags
import jax

from mmjax import errors

_COORDINATOR_ADDRESS = flags.DEFINE_string(
    "coordinator_address", os.environ.get("JAX_COORDINATOR_ADDRESS"),
    "host:port of process 0, reachable from every process (env JAX_COORDINATOR_ADDRESS).")
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", int(os.environ.get("JAX_NUM_PROCESSES", "1")),
    "Number of processes in the run (env JAX_NUM_PROCESSES); 1: no jax.distributed.")
_PROCESS_ID = flags.DEFINE_integer(
    "process_id", int(os.environ["JAX_PROCESS_ID"]) if "JAX_PROCESS_ID" in os.environ else None,
    "This process's index in [0, num_processes) (env JAX_PROCESS_ID).")
_AUTO = flags.DEFINE_bool(
    "distributed_auto", False,
    "Let jax.distributed detect coordinator, process count and id (Cloud TPU pods, SLURM, Open MPI).")


def initialize_from_flags() -> None:
  """Calls jax.distributed.initialize when the flags (or environment) describe several processes.

  Must run before anything touches a JAX device.
  """
  if _AUTO.value:
    jax.distributed.initialize()
  elif _NUM_PROCESSES.value > 1:
    if not _COORDINATOR_ADDRESS.value or _PROCESS_ID.value is None:
      raise errors.ConfigError(
          f"--num_processes={_NUM_PROCESSES.value} also needs --coordinator_address=<host:port of process 0> "
          "and --process_id=<0..num_processes-1> (or JAX_COORDINATOR_ADDRESS and JAX_PROCESS_ID).")
    if not 0 <= _PROCESS_ID.value < _NUM_PROCESSES.value:
      raise errors.ConfigError(f"--process_id={_PROCESS_ID.value} must be in [0, {_NUM_PROCESSES.value}).")
    jax.distributed.initialize(coordinator_address=_COORDINATOR_ADDRESS.value,
                               num_processes=_NUM_PROCESSES.value, process_id=_PROCESS_ID.value)
  else:
    return
  logging.info("Process %d of %d: %d local devices, %d in total.", jax.process_index(), jax.process_count(),
               jax.local_device_count(), jax.device_count())
