"""What every script does first: quiet logging, the host allocator setting, joining a multi-process run, and
(`--regenerate_data`) repairing a damaged dataset.

The multi-process flags (mmjax.parallel.distributed) live here, with the scripts, and default to the
environment variables JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID. The scripts import
JAX (through mmjax) only in main(), so a bad flag or config is reported within a second.
"""
import os

from absl import flags
from absl import logging as absl_logging

_COORDINATOR_ADDRESS = flags.DEFINE_string(
    "coordinator_address", os.environ.get("JAX_COORDINATOR_ADDRESS"),
    "host:port of process 0, reachable from every process (env JAX_COORDINATOR_ADDRESS).")
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", int(os.environ.get("JAX_NUM_PROCESSES", "1")),
    "Number of processes in the run (env JAX_NUM_PROCESSES); 1: no jax.distributed.")
_PROCESS_ID = flags.DEFINE_integer(
    "process_id", int(os.environ["JAX_PROCESS_ID"]) if "JAX_PROCESS_ID" in os.environ else None,
    "This process's index in [0, num_processes) (env JAX_PROCESS_ID).")
_REGENERATE_DATA = flags.DEFINE_bool(
    "regenerate_data", False, "If the dataset fails its check at open (a missing, short or corrupted file), delete "
    "its version folder (nothing else of the data dir) and generate it again; a whole dataset is kept.")
_AUTO = flags.DEFINE_bool(
    "distributed_auto", False,
    "Let jax.distributed detect coordinator, process count and id (Cloud TPU pods, SLURM, Open MPI).")


def start(keep_freed_memory: bool = True) -> bool:
  """First thing in a script's main(): logs only warnings and errors unless `--verbosity` is given (absl's
  flag: 0 shows INFO, from mmjax and every library), and keeps the memory jitted steps free in malloc
  (mmjax.trainer.host_memory; before JAX starts its threads). Returns whether that allocator setting holds."""
  from mmjax.trainer import host_memory  # Here, so that flag errors are reported before JAX is imported.

  if not flags.FLAGS["verbosity"].present:
    absl_logging.set_verbosity(absl_logging.WARNING)
  return keep_freed_memory and host_memory.keep_freed_memory()


def join_processes() -> None:
  """jax.distributed.initialize when the flags describe several processes; before any device is touched."""
  from mmjax.parallel import distributed

  distributed.initialize(coordinator_address=_COORDINATOR_ADDRESS.value, num_processes=_NUM_PROCESSES.value,
                         process_id=_PROCESS_ID.value, auto=_AUTO.value)


def repair_data(data_config) -> None:
  """With --regenerate_data, a dataset that fails its check at open is regenerated (by process 0, which writes
  data: mmjax.trainer.run.prepare_data); after join_processes()."""
  if not _REGENERATE_DATA.value:
    return
  import jax

  from mmjax import data as mmdata
  from mmjax.trainer import run

  if jax.process_index() == 0:
    mmdata.prepare(data_config, announce=run.say, regenerate=True)


def predictor(config, workdir: str | None):
  """The mmjax.inference.Predictor of predict.py and embed.py: --workdir's newest checkpoint, or without one
  --config's pretrained towers; after joining processes and repairing the data (--regenerate_data)."""
  from mmjax import errors, inference

  if config is None:
    raise errors.ConfigError("Give --workdir=<a workdir written by experiments.train> or "
                             "--config=<config file>[:arg] (its pretrained towers).")
  join_processes()
  repair_data(config.data)
  if workdir:
    return inference.Predictor.from_checkpoint(config, workdir)
  return inference.Predictor.from_config(config)
