"""The one train loop, for every task: restore or initialise, step, log, evaluate, checkpoint, stop."""
from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence

import jax
import ml_collections
import numpy as np
from tqdm import auto as tqdm

from mmjax import data as mmdata
from mmjax import errors
from mmjax.parallel import sharding
from mmjax.trainer import faults, finetune, periodic
from mmjax.trainer import workdir as workdir_lib
from mmjax.trainer.checkpoint import Checkpointer, has_checkpoint
from mmjax.trainer.metric_writer import MetricWriter
from mmjax.trainer.run import Run, build_run

PARAMETERS_FILE = "parameters.txt"


def say(line: str) -> None:
  """One line for the person watching, on stderr beside the progress bar (which it does not break); process 0."""
  if jax.process_index() == 0:
    tqdm.tqdm.write(line, file=sys.stderr)


def _check_finite(step: int, metrics: Mapping[str, float], checkpointer: Checkpointer, workdir: str) -> None:
  bad = [k for k in ("loss", "grad_norm") if not math.isfinite(metrics[k])]
  if bad:
    last = checkpointer.latest_step()
    kept = f"the last good checkpoint (step {last}) is kept in {workdir}" if last is not None else \
        "no checkpoint had been written yet"
    raise errors.NonFiniteError(
        f"Non-finite {bad[0]} ({metrics[bad[0]]}) at step {step}; stopping, {kept}. Lower "
        "config.optim.lr, raise config.optim.warmup_steps or check the input data.")


def _eval_line(step: int, key: str, metrics: Mapping[str, float], headline: Sequence[str], seconds: float) -> str:
  shown = [name for name in headline if name in metrics] or sorted(metrics)[:4]
  return (f"step {step} eval {key}: " + ", ".join(f"{name} {metrics[name]:.4g}" for name in shown)
          + f" ({seconds:.0f} s)")


def _write_parameters(run: Run, state, workdir: str) -> None:
  """The parameter count and every parameter's shape and sharding, as `<workdir>/parameters.txt`."""
  if jax.process_index() == 0:
    count = sum(x.size for x in jax.tree.leaves(state.params))
    with open(os.path.join(workdir, PARAMETERS_FILE), "w") as f:
      f.write(f"{count:,} parameters on mesh {dict(run.mesh.shape)}\n{sharding.sharding_table(state.params)}\n")


def train(config: ml_collections.ConfigDict, workdir: str,
          devices: Sequence[jax.Device] | None = None) -> dict[str, float]:
  """Trains `config` in `workdir` (resuming if it holds a checkpoint); returns the final metrics.

  `devices` defaults to all devices; `config.mesh` is laid over them. The restore order: this workdir's
  newest good checkpoint, then `config.init_from` (a pretrained run's towers), then a fresh init.
  """
  schedule = periodic.Schedule.from_config(config)
  workdir = os.path.abspath(os.path.expanduser(workdir))
  os.makedirs(workdir, exist_ok=True)
  workdir_lib.check_resumable(config, workdir, has_checkpoint(os.path.join(workdir, "checkpoints")))
  workdir_lib.write_config(config, workdir)
  run = build_run(config, devices)
  checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=config.keep_checkpoints)
  writer = MetricWriter(workdir)
  loader = mmdata.train_loader(config.data, batch_size=run.batch_size, seed=config.seed)

  with run.context():
    evals = run.build_evaluators()  # Checks their splits before any compile.
    restored = checkpointer.restore_latest(run.abstract)
    unlogged = []  # Per-step train metrics since the last log step.
    if restored is None:
      state = run.init_state()
      writer.truncate_after(0)  # Rows of an earlier attempt that died before its first checkpoint.
      if config.init_from:
        state = finetune.init_from(state, config.init_from, run.state_sharding)
      _write_parameters(run, state, workdir)
    else:
      state, host_state, step = restored
      loader.set_state(host_state["loader"])
      # Restored so that the first row after a resume between log steps averages the same steps as an
      # uninterrupted run's.
      unlogged = host_state["unlogged_metrics"]
      # The final evals come after the final checkpoint, so a restart there redoes them.
      writer.truncate_after(step, keep_evals_at_step=step < config.total_steps)
      say(f"Resumed from step {step} of {workdir}.")
    train_step = run.jit_train_step()
    step = int(state.step)

    def run_evals(names: Sequence[str]) -> dict[str, float]:
      results = {}
      for key in names:
        start = time.time()
        metrics = evals[key].run(state.params)
        say(_eval_line(step, key, metrics, evals[key].headline, time.time() - start))
        results.update({f"eval/{key}/{metric}": value for metric, value in metrics.items()})
        faults.maybe_kill("eval", step)
      if results:
        writer.write(step, results)
      return results

    pending, interval = None, unlogged
    progress = tqdm.tqdm(total=config.total_steps, initial=step, desc="train", unit="step", dynamic_ncols=True,
                         disable=jax.process_index() != 0 or step >= config.total_steps)
    last_log_time, last_log_step = time.time(), step

    def fetch_and_check() -> None:
      """Fetches the pending step's metrics and stops on a non-finite one before it is logged or checkpointed."""
      nonlocal pending
      if pending is not None:
        _fetch(*pending, interval, progress)
        pending = None
      for metrics in interval:
        _check_finite(metrics["step"], metrics, checkpointer, workdir)

    stopping = False
    try:
      with periodic.StopRequest() as stop:
        while step < config.total_steps and not stopping:
          state, metrics = train_step(state, run.to_device(run.task_inputs(next(loader))))
          step += 1
          faults.maybe_kill("step", step)
          # Fetch the previous step's metrics only now, so the host prepares this batch while the device still
          # runs the previous step.
          if pending is not None:
            _fetch(*pending, interval, progress)
          pending = (step, metrics)
          due = schedule.due(step)
          if due.log:
            fetch_and_check()
            summary = {f"train/{k}": float(np.mean([m[k] for m in interval])) for k in interval[0] if k != "step"}
            summary["train/steps_per_s"] = (step - last_log_step) / (time.time() - last_log_time)
            writer.write(step, summary)
            interval, last_log_time, last_log_step = [], time.time(), step
          if due.evals:
            eval_start = time.time()
            run_evals(due.evals)
            last_log_time += time.time() - eval_start  # steps_per_s counts training time only.
          stopping = stop.agreed(step, config.log_every_steps)
          if due.checkpoint or stopping:
            fetch_and_check()
            checkpointer.save(step, state, {"loader": loader.get_state(), "unlogged_metrics": interval})
            faults.maybe_kill("save", step)
    finally:
      # Also on an error: let an in-flight save of a good step finish rather than leave it half-written.
      progress.close()
      checkpointer.wait()
      checkpointer.close()
    if stopping:
      since = f", {time.time() - stop.requested_at:.1f} s after the signal" if stop.requested else ""
      logging.warning("Stopped at step %d on request%s; rerun the same command to resume.", step, since)
      writer.close()
      return {}
    final = run_evals(list(config.evals))
  writer.write_final(step, final)
  writer.close()
  return final


def _fetch(step: int, metrics, interval: list[dict], progress: tqdm.tqdm) -> None:
  values = {k: float(v) for k, v in jax.device_get(metrics).items()}
  interval.append({"step": step, **values})
  progress.update(step - progress.n)
  progress.set_postfix(loss=f"{values['loss']:.4f}", refresh=False)
