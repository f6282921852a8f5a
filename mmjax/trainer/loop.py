"""The one train loop, for every task: restore or initialise, step, log, evaluate, checkpoint, stop."""
from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence

import jax
import ml_collections

from mmjax import data as mmdata
from mmjax import errors, evaluators
from mmjax.nn import REMAT_POLICIES
from mmjax.parallel import sharding
from mmjax.trainer import faults, finetune, periodic
from mmjax.trainer import workdir as workdir_lib
from mmjax.trainer import workdir_lock
from mmjax.trainer.checkpoint import Checkpointer, has_checkpoint
from mmjax.trainer.metric_writer import MetricWriter
from mmjax.trainer.run import Run, build_run, say
from mmjax.trainer.state import TrainState
from mmjax.trainer.train_log import TrainLog

PARAMETERS_FILE = "parameters.txt"


@contextlib.contextmanager
def out_of_memory_reported(what: str, advice: str) -> Iterator[None]:
  """Running out of memory inside (XLA's RESOURCE_EXHAUSTED, compiling or running a program or placing a batch on
  the devices; a MemoryError, the host allocating one) becomes an OutOfMemoryError: `what` did not fit, and the
  `advice`. The fix is a config value, which a traceback through XLA does not name. Other errors pass unchanged."""
  try:
    yield
  except (MemoryError, jax.errors.JaxRuntimeError) as e:
    if not isinstance(e, MemoryError) and "RESOURCE_EXHAUSTED" not in str(e):
      raise
    detail = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
    raise errors.OutOfMemoryError(f"Out of memory {what} ({detail}). {advice}") from e


def _train_memory_advice(config: ml_collections.ConfigDict) -> str:
  """What lowers a train step's memory: a smaller batch; or the same batch in micro-batches, or remat, whose
  activations (most of a step's memory) then take a fraction of it, as long as the batch's inputs fit."""
  remat = (f", or recompute activations in the backward pass with config.model.remat (now {config.model.remat!r}; "
           f"one of {list(REMAT_POLICIES)})" if "remat" in config.model else "")
  return (f"Lower config.batch_size; or, if one batch of inputs fits, keep it and split each step into micro-batches "
          f"with config.grad_accum_steps (now {config.grad_accum_steps}){remat}.")


def evaluate_at(step: int, state: TrainState, evals: Mapping[str, evaluators.SplitEvaluator], names: Sequence[str],
                writer: MetricWriter) -> dict[str, float]:
  """Runs the evaluators `names` on `state`, says one line per evaluator with its headline metrics and writes
  them all at `step`: {"eval/<key>/<metric>": value}."""
  results = {}
  for key in names:
    start = time.time()
    batch_size = evals[key].batch_size * jax.process_count()
    with out_of_memory_reported(f"evaluating {key} with config.eval_batch_size={batch_size}",
                                "Lower config.eval_batch_size."):
      metrics = evals[key].run(state.params)
    shown = [name for name in evals[key].headline if name in metrics] or sorted(metrics)[:4]
    say(f"step {step} eval {key}: " + ", ".join(f"{name} {metrics[name]:.4g}" for name in shown)
        + f" ({time.time() - start:.0f} s)")
    results.update({f"eval/{key}/{metric}": value for metric, value in metrics.items()})
    faults.maybe_kill("eval", step)
  if results:
    writer.write(step, results)
  return results


def _write_parameters(run: Run, state: TrainState, workdir: str) -> None:
  """The parameter count and every parameter's shape and sharding, as `<workdir>/parameters.txt`."""
  if jax.process_index() == 0:
    count = sum(x.size for x in jax.tree.leaves(state.params))
    with open(os.path.join(workdir, PARAMETERS_FILE), "w") as f:
      f.write(f"{count:,} parameters on mesh {dict(run.mesh.shape)}\n{sharding.sharding_table(state.params)}\n")


def _initial_state(run: Run, checkpointer: Checkpointer, loader: mmdata.TrainLoader, writer: MetricWriter,
                   workdir: str) -> tuple[TrainState, list[dict[str, float]]]:
  """(state, train metrics not yet logged) by the restore order: this workdir's newest good checkpoint (which
  also puts the loader where it was), else a fresh init with the pretrained checkpoints `config.model` names
  imported, then `config.init_from` (an mmjax run's towers) loaded over it."""
  config = run.config
  restored = checkpointer.restore_latest(run.abstract)
  if restored is None:
    state = run.init_state()
    writer.truncate_after(0)  # Rows of an earlier attempt that died before its first checkpoint.
    state = finetune.load_pretrained(state, config.model.to_dict(), run.state_sharding)
    if config.init_from:
      state = finetune.init_from(state, config.init_from, config.seed, run.state_sharding)
    _write_parameters(run, state, workdir)
    return state, []
  state, host_state, step = restored
  loader.set_state(host_state["loader"])
  # The final evals come after the final checkpoint, so a restart there redoes them.
  writer.truncate_after(step, keep_evals_at_step=step < config.total_steps)
  say(f"Resumed from step {step} of {workdir}.")
  return state, host_state["unlogged_metrics"]


def train(config: ml_collections.ConfigDict, workdir: str,
          devices: Sequence[jax.Device] | None = None) -> dict[str, float]:
  """Trains `config` in `workdir` (resuming if it holds a checkpoint); returns the final metrics, also written to
  `<workdir>/final_metrics.json`. `devices` defaults to all devices; `config.mesh` is laid over them. The run
  holds the workdir's lock throughout (mmjax.trainer.workdir_lock), so a second run on it is refused at once."""
  workdir = os.path.abspath(os.path.expanduser(workdir))
  with workdir_lock.held(workdir):
    return _train(config, workdir, devices)


def _train(config: ml_collections.ConfigDict, workdir: str, devices: Sequence[jax.Device] | None) -> dict[str, float]:
  """`train` in a workdir whose lock this run holds. It writes nothing there before every config check has
  passed (the resume, init_from, the run, its evaluators and its loader), so a refused config leaves the workdir
  as it was."""
  schedule = periodic.Schedule.from_config(config)
  resuming = has_checkpoint(os.path.join(workdir, "checkpoints"))
  workdir_lib.check_resumable(config, workdir, resuming)
  if config.init_from and not resuming:
    for pretrained_run in finetune.init_from_runs(config.init_from, config.seed):
      finetune.check_init_from(pretrained_run)
  run = build_run(config, devices)
  loader = mmdata.train_loader(config.data, batch_size=run.batch_size, seed=config.seed)

  with run.context():
    evals = run.build_evaluators()  # Checks their splits before any compile.
    workdir_lib.write_config(config, workdir)
    checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=config.keep_checkpoints)
    writer = MetricWriter(workdir)
    state, unlogged = _initial_state(run, checkpointer, loader, writer, workdir)
    train_step = run.jit_train_step()
    step = int(state.step)
    log = TrainLog(writer, checkpointer, step=step, total_steps=config.total_steps, interval=unlogged)
    stopping = False
    try:
      with periodic.StopRequest() as stop, out_of_memory_reported(
          f"training with config.batch_size={config.batch_size}", _train_memory_advice(config)):
        while step < config.total_steps and not stopping:
          state, metrics = train_step(state, run.to_device(run.task_inputs(next(loader))))
          step += 1
          faults.maybe_kill("step", step)
          log.add(step, metrics)
          due = schedule.due(step)
          if due.log:
            log.summarize(step)
          if due.evals:
            with log.paused():
              evaluate_at(step, state, evals, due.evals, writer)
          stopping = stop.agreed()
          if due.checkpoint or stopping:
            checkpointer.save(step, state, {"loader": loader.get_state(), "unlogged_metrics": log.flush()})
            faults.maybe_kill("save", step)
    finally:
      # Also on an error: let an in-flight save of a good step finish rather than leave it half-written.
      log.close()
      checkpointer.wait()
      checkpointer.close()
    if stopping:
      since = f", {time.time() - stop.requested_at:.1f} s after the signal" if stop.requested else ""
      logging.warning("Stopped at step %d on request%s; rerun the same command to resume.", step, since)
      writer.close()
      return {}
    final = evaluate_at(step, state, evals, list(config.evals), writer)
  writer.write_final(step, final)
  writer.close()
  return final
