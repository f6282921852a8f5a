"""Joining a multi-process (multi-host) run through `jax.distributed`.

Every process runs the same command. On one machine, for example two processes:

  python -m experiments.train ... --coordinator_address=127.0.0.1:12345 --num_processes=2 --process_id=0
  python -m experiments.train ... --coordinator_address=127.0.0.1:12345 --num_processes=2 --process_id=1

The scripts' flags default to the environment variables JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and
JAX_PROCESS_ID, so a launcher can set those instead. On Cloud TPU pods, SLURM or Open MPI,
`--distributed_auto` lets JAX detect all three (launch kits: experiments/cluster/).
"""
import logging

import jax

from mmjax import errors


def initialize(*, coordinator_address: str | None, num_processes: int, process_id: int | None,
               auto: bool = False) -> None:
  """Calls jax.distributed.initialize when the arguments describe several processes (or `auto`).

  Must run before anything touches a JAX device.
  """
  if auto:
    try:
      jax.distributed.initialize()
    except ValueError as e:  # No cluster detected: jax names the first setting it is missing.
      raise errors.ConfigError(
          f"--distributed_auto found no cluster to join ({e}): JAX detects Cloud TPU pods, SLURM (inside srun), "
          "Open MPI (mpirun) and Kubernetes; elsewhere give --coordinator_address, --num_processes and "
          "--process_id.") from e
  elif num_processes > 1:
    if not coordinator_address or process_id is None:
      raise errors.ConfigError(
          f"--num_processes={num_processes} also needs --coordinator_address=<host:port of process 0> "
          "and --process_id=<0..num_processes-1> (or JAX_COORDINATOR_ADDRESS and JAX_PROCESS_ID).")
    if not 0 <= process_id < num_processes:
      raise errors.ConfigError(f"--process_id={process_id} must be in [0, {num_processes}).")
    jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                               process_id=process_id)
  else:
    return
  logging.info("Process %d of %d: %d local devices, %d in total.", jax.process_index(), jax.process_count(),
               jax.local_device_count(), jax.device_count())
