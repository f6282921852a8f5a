"""The one train loop, for every task: sharded init, jitted step, eval, checkpoint, logging."""
from __future__ import annotations

import itertools
import logging
import math
import os
import signal
import time
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tqdm
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec as P

from mmjax import data as mmdata
from mmjax import accumulation, errors, evaluators, finetune, models, optim, sharding, tasks
from mmjax import workdir as workdir_lib
from mmjax.checkpoint import Checkpointer, has_checkpoint
from mmjax.metric_writer import MetricWriter
from mmjax.train_state import TrainState

# Fault injection for the crash tests: MMJAX_KILL_AT=<point>:<step>[:<signal>] sends the process
# SIGKILL (or the named signal) at that point (see _kill_point). Unset, as in every real run, it
# costs one dict lookup per point.
KILL_AT_ENV = "MMJAX_KILL_AT"


def prepare_data(data_config: ml_collections.ConfigDict) -> None:
  """Generates the dataset on first use: process 0 writes it, the others wait and open it."""
  if jax.process_index() == 0:
    mmdata.prepare(data_config)
  multihost_utils.sync_global_devices("mmjax_prepare_data")
  mmdata.prepare(data_config)


def check_run_settings(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError naming every loop setting (steps, intervals) that is not a positive int."""
  settings = {name: config[name] for name in
              ("total_steps", "log_every_steps", "checkpoint_every_steps", "keep_checkpoints")}
  settings.update({f"evals.{name}.every_steps": c.every_steps for name, c in config.evals.items()})
  bad = [f"config.{name}={value!r}" for name, value in settings.items()
         if isinstance(value, bool) or not isinstance(value, int) or value <= 0]
  if bad:
    raise errors.ConfigError(f"{', '.join(bad)}: each must be a positive integer.")


def check_batch_size(config: ml_collections.ConfigDict, mesh, rules: sharding.Rules) -> int:
  """The per-process batch size, after checking the global one splits evenly."""
  parallel = sharding.data_parallel_size(mesh, rules)
  for name in ("batch_size", "eval_batch_size"):
    size = config[name]
    if size <= 0 or size % parallel or size % jax.process_count():
      raise errors.ConfigError(f"config.{name}={size} must be a positive multiple of the data-parallel device "
                               f"count ({parallel}) and of the process count ({jax.process_count()}).")
  steps = config.grad_accum_steps
  if isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0 or config.batch_size % (steps * parallel):
    raise errors.ConfigError(f"config.grad_accum_steps={steps!r} must be a positive integer that splits "
                             f"config.batch_size={config.batch_size} into micro-batches each a multiple of the "
                             f"data-parallel device count ({parallel}).")
  return config.batch_size // jax.process_count()


class StopRequest:
  """SIGTERM (preemption) or Ctrl-C asks the loop to save and stop after the current step.
  A second Ctrl-C interrupts at once."""

  def __init__(self):
    self.requested = False
    self.requested_at = None

  def __enter__(self):
    self.previous = {s: signal.signal(s, self._handle) for s in (signal.SIGTERM, signal.SIGINT)}
    return self

  def _handle(self, signum, frame):
    del frame
    logging.warning("Received %s: saving a checkpoint and stopping.", signal.Signals(signum).name)
    self.requested, self.requested_at = True, time.time()
    signal.signal(signal.SIGINT, signal.default_int_handler)

  def __exit__(self, *exc):
    for s, handler in self.previous.items():
      signal.signal(s, handler)


def _stop_agreed(stop: StopRequest, step: int, every_steps: int) -> bool:
  """Whether to stop after `step`. Every process must stop at the same step, or the others wait
  forever in the next step's collectives: with several processes the requests are gathered
  (a collective itself, so only every `every_steps`, the log interval) and any one stops all."""
  if jax.process_count() == 1:
    return stop.requested
  if step % every_steps:
    return False
  return bool(multihost_utils.process_allgather(np.asarray(stop.requested)).any())


def _kill_point(point: str, step: int) -> None:
  """Signals this process if MMJAX_KILL_AT names this point and step: "step" (a step dispatched,
  its result not yet fetched), "save" (a checkpoint being written in the background) or "eval"
  (between evaluators)."""
  fields = os.environ.get(KILL_AT_ENV, "").split(":")
  if fields[:2] == [point, str(step)]:
    os.kill(os.getpid(), signal.Signals[fields[2] if len(fields) > 2 else "SIGKILL"])


def make_train_step(task, tx: optax.GradientTransformation, schedule: optax.Schedule,
                    grad_accum_steps: int = 1) -> Callable:
  """(state, batch) → (state, metrics): one optimizer step on the batch's gradient, computed
  over `grad_accum_steps` micro-batches (see mmjax.accumulation)."""
  value_and_grad = accumulation.value_and_grad_fn(task, grad_accum_steps)

  def train_step(state: TrainState, batch: dict[str, jax.Array]) -> tuple[TrainState, dict]:
    rng = jax.random.fold_in(state.rng, state.step)
    (_, metrics), grads = value_and_grad(state.params, batch, rng)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {**metrics, "grad_norm": optax.global_norm(grads), "lr": schedule(state.step)}
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics
  return train_step


def jit_train_step(task, tx: optax.GradientTransformation, schedule: optax.Schedule, mesh, rules: sharding.Rules,
                   state_sharding, grad_accum_steps: int = 1) -> Callable:
  """The jitted train step: the state donated and kept in `state_sharding`, the batch split over
  the data-parallel axes, the metrics replicated."""
  return jax.jit(make_train_step(task, tx, schedule, grad_accum_steps), donate_argnums=0,
                 in_shardings=(state_sharding, sharding.batch_sharding(mesh, rules)),
                 out_shardings=(state_sharding, NamedSharding(mesh, P())))


def _check_finite(step: int, metrics: dict[str, float], checkpointer: Checkpointer, workdir: str) -> None:
  bad = [k for k in ("loss", "grad_norm") if not math.isfinite(metrics[k])]
  if bad:
    last = checkpointer.latest_step()
    kept = f"the last good checkpoint (step {last}) is kept in {workdir}" if last is not None else \
        "no checkpoint had been written yet"
    raise errors.NonFiniteError(
        f"Non-finite {bad[0]} ({metrics[bad[0]]}) at step {step}; stopping, {kept}. Lower "
        "config.optim.lr, raise config.optim.warmup_steps or check the input data.")


def _state_init(task, tx, example: dict[str, np.ndarray]) -> Callable:
  """init(rng) → TrainState. Params are shaped from one example row; their shapes never depend on
  the batch size."""
  def init(rng: jax.Array) -> TrainState:
    params = task.init(rng, {k: jnp.zeros((1, *v.shape[1:]), v.dtype) for k, v in example.items()})["params"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params), rng=rng)
  return init


def abstract_state(init: Callable, seed: int, mesh, rules):
  """(abstract TrainState with shardings, its sharding tree): shapes only, nothing allocated."""
  boxed = jax.eval_shape(init, jax.random.PRNGKey(seed))
  state_sharding = sharding.logical_shardings(boxed, mesh, rules)
  abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                          nn.unbox(boxed), state_sharding)
  sharding.check_divisible(abstract.params)
  return abstract, state_sharding


def build_evaluators(config: ml_collections.ConfigDict, task, mesh, rules) -> dict:
  """The evaluators of `config.evals`, sharing predict_fns jitted once with replicated outputs."""
  predict_fns = {name: jax.jit(fn, out_shardings=NamedSharding(mesh, P()))
                 for name, fn in task.predict_fns().items()}
  return {name: evaluators.build(cfg, data_config=config.data, predict_fns=predict_fns,
                                 batch_size=config.eval_batch_size // jax.process_count(),
                                 to_device=lambda batch: sharding.to_global_batch(batch, mesh, rules))
          for name, cfg in config.evals.items()}


class _Run:
  """What train() and evaluate() both build from a config."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str, devices=None):
    self.workdir = os.path.abspath(os.path.expanduser(workdir))
    self.mesh = sharding.make_mesh(config.mesh, devices)
    self.rules = sharding.rules_for_mesh(config.sharding_rules, self.mesh)
    self.batch_size = check_batch_size(config, self.mesh, self.rules)
    prepare_data(config.data)
    tokenizer = mmdata.get_tokenizer(config.data)
    for key, vocab_size in models.vocab_sizes(config.model).items():
      if vocab_size < tokenizer.vocab_size:
        raise errors.ConfigError(f"{key}={vocab_size} is smaller than the tokenizer's vocabulary "
                                 f"({tokenizer.vocab_size}); raise it.")
    self.task = tasks.build(config, models.build(config.model), tokenizer)
    self.tx, self.schedule = optim.make_optimizer(config.optim, config.total_steps,
                                                  finetune.parse_towers(config.freeze))
    self.checkpointer = Checkpointer(os.path.join(self.workdir, "checkpoints"),
                                     max_to_keep=config.keep_checkpoints)
    self.loader = mmdata.train_loader(config.data, batch_size=self.batch_size, seed=config.seed)
    self.first_batch = self.task_inputs(next(self.loader))
    self.init = _state_init(self.task, self.tx, self.first_batch)
    self.abstract, self.state_sharding = abstract_state(self.init, config.seed, self.mesh, self.rules)

  def task_inputs(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v for k, v in batch.items() if k in self.task.batch_keys}

  def to_device(self, batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
    return sharding.to_global_batch(batch, self.mesh, self.rules)


def _init_from(state: TrainState, workdir: str, state_sharding) -> TrainState:
  """`state` with the towers of `workdir`'s newest checkpoint loaded into its params."""
  pretrained, step = finetune.load_pretrained_params(workdir)
  params, loaded = finetune.load_towers(state.params, pretrained)
  logging.info("Initialised %s from step %d of %s.", ", ".join(loaded), step, workdir)

  def place(leaf, leaf_sharding):
    """Loaded (host numpy) leaves become global arrays; each process supplies its own shards."""
    if isinstance(leaf, jax.Array):
      return leaf
    return jax.make_array_from_callback(leaf.shape, leaf_sharding, lambda index: leaf[index])
  return state.replace(params=jax.tree.map(place, params, state_sharding.params))


def _restore(run: _Run) -> tuple[TrainState, int]:
  restored = run.checkpointer.restore_latest(run.abstract, host_state=False)
  if restored is None:
    raise errors.CheckpointError(f"No checkpoint in {run.workdir}/checkpoints; train first with "
                                 f"python -m experiments.train --workdir={run.workdir} --config=...")
  state, _, step = restored
  return state, step


def load_state(config: ml_collections.ConfigDict, workdir: str,
               devices: Sequence[jax.Device] | None = None) -> TrainState:
  """The newest good TrainState of `workdir` (e.g. to explore a trained model in a notebook)."""
  run = _Run(config, workdir, devices)
  with jax.set_mesh(run.mesh), nn.logical_axis_rules(run.rules):
    state, _ = _restore(run)
  run.checkpointer.close()
  return state


def evaluate(config: ml_collections.ConfigDict, workdir: str,
             devices: Sequence[jax.Device] | None = None) -> dict[str, float]:
  """Runs every evaluator of `config.evals` on the newest good checkpoint of `workdir`."""
  run = _Run(config, workdir, devices)
  with jax.set_mesh(run.mesh), nn.logical_axis_rules(run.rules):
    state, step = _restore(run)
    results = {"step": step}
    for name, evaluator in build_evaluators(config, run.task, run.mesh, run.rules).items():
      results.update({f"eval/{name}/{k}": v for k, v in evaluator.run(state.params).items()})
  run.checkpointer.close()
  return results


def train(config: ml_collections.ConfigDict, workdir: str,
          devices: Sequence[jax.Device] | None = None) -> dict[str, float]:
  """Trains `config` in `workdir` (resuming if it holds a checkpoint); returns the final metrics.

  `devices` defaults to all devices; `config.mesh` is laid over them.
  """
  check_run_settings(config)
  workdir = os.path.abspath(os.path.expanduser(workdir))
  os.makedirs(workdir, exist_ok=True)
  workdir_lib.check_resumable(config, workdir, has_checkpoint(os.path.join(workdir, "checkpoints")))
  workdir_lib.write_config(config, workdir)
  run = _Run(config, workdir, devices)
  workdir, loader, checkpointer, task = run.workdir, run.loader, run.checkpointer, run.task
  writer = MetricWriter(workdir)

  with jax.set_mesh(run.mesh), nn.logical_axis_rules(run.rules):
    evals = build_evaluators(config, task, run.mesh, run.rules)  # Checks their splits before any compile.
    restored = checkpointer.restore_latest(run.abstract)
    unlogged = []  # Per-step train metrics since the last log step.
    if restored is None:
      state = jax.jit(lambda rng: nn.unbox(run.init(rng)), out_shardings=run.state_sharding)(
          jax.random.PRNGKey(config.seed))
      batches = itertools.chain([run.first_batch], loader)
      writer.truncate_after(0)  # Rows of an earlier attempt that died before its first checkpoint.
      logging.info("Starting from scratch: %s parameters, laid out on mesh %s as:\n%s",
                   f"{sum(x.size for x in jax.tree.leaves(state.params)):,}", dict(run.mesh.shape),
                   sharding.sharding_table(state.params))
      if config.init_from:
        state = _init_from(state, config.init_from, run.state_sharding)
    else:
      state, host_state, step = restored
      loader.set_state(host_state["loader"])
      # Restored so that the first row after a resume between log steps averages the same
      # steps as an uninterrupted run's.
      unlogged = host_state["unlogged_metrics"]
      batches = loader
      # The final evals come after the final checkpoint, so a restart there redoes them.
      writer.truncate_after(step, keep_evals_at_step=step < config.total_steps)
      logging.info("Resumed from step %d of %s.", step, workdir)

    train_step = jit_train_step(task, run.tx, run.schedule, run.mesh, run.rules, run.state_sharding,
                                config.grad_accum_steps)

    def run_evals(step: int, names) -> dict[str, float]:
      results = {}
      for name in names:
        start = time.time()
        for metric, value in evals[name].run(state.params).items():
          results[f"eval/{name}/{metric}"] = value
        logging.info("eval %s took %.1f s", name, time.time() - start)
        _kill_point("eval", step)
      if results:
        writer.write(step, results)
      return results

    step = int(state.step)
    pending, interval = None, unlogged
    progress = tqdm.tqdm(total=config.total_steps, initial=step, desc="train", unit="step",
                         disable=jax.process_index() != 0, dynamic_ncols=True)
    last_log_time, last_log_step = time.time(), step

    def flush_and_check() -> None:
      """Fetches the pending step's metrics and stops on a non-finite one before it is logged
      or checkpointed."""
      nonlocal pending
      if pending is not None:
        _log_step(*pending, interval, progress)
        pending = None
      for m in interval:
        _check_finite(m["step"], m, checkpointer, workdir)

    try:
      stopping = False
      with StopRequest() as stop:
        while step < config.total_steps and not stopping:
          batch = run.to_device(run.task_inputs(next(batches)))
          state, metrics = train_step(state, batch)
          step += 1
          _kill_point("step", step)
          # Fetch the previous step's metrics only now, so the host prepares this batch while the
          # device still runs the previous step.
          if pending is not None:
            _log_step(*pending, interval, progress)
          pending = (step, metrics)
          if step % config.log_every_steps == 0 or step == config.total_steps:
            flush_and_check()
            summary = {f"train/{k}": float(np.mean([m[k] for m in interval]))
                       for k in interval[0] if k != "step"}
            summary["train/steps_per_s"] = (step - last_log_step) / (time.time() - last_log_time)
            writer.write(step, summary)
            interval, last_log_time, last_log_step = [], time.time(), step
          due = [n for n, c in config.evals.items() if step % c.every_steps == 0 and step < config.total_steps]
          if due:
            eval_start = time.time()
            run_evals(step, due)
            last_log_time += time.time() - eval_start  # steps_per_s counts training time only.
          stopping = _stop_agreed(stop, step, config.log_every_steps)
          if step % config.checkpoint_every_steps == 0 or step == config.total_steps or stopping:
            flush_and_check()
            checkpointer.save(step, state, {"loader": loader.get_state(), "unlogged_metrics": interval})
            _kill_point("save", step)
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
    final = run_evals(step, list(config.evals))
    writer.write_final(step, final)
    writer.close()
    return final


def _log_step(step: int, metrics, interval: list[dict], progress: tqdm.tqdm) -> None:
  values = {k: float(v) for k, v in jax.device_get(metrics).items()}
  interval.append({"step": step, **values})
  progress.update(step - progress.n)
  progress.set_postfix(loss=f"{values['loss']:.4f}", refresh=False)
