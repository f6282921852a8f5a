"""A run, built from a config: mesh, data facts, model, task, optimizer and the sharded state's layout.

`build_run(config)` is the one place a config becomes these objects; training (mmjax.trainer.loop),
evaluation, notebooks (`load_state`) and the benchmark (experiments/benchmark.py) all start from it.
Parameters are shaped from one example's field shapes (mmjax.data.element_spec), so nothing here opens
a training loader or allocates the state.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from tqdm import auto as tqdm

from mmjax import data as mmdata
from mmjax import errors, evaluators, models, tasks
from mmjax.parallel import sharding
from mmjax.trainer import feature_cache, finetune, optimizer
from mmjax.trainer.checkpoint import Checkpointer, has_checkpoint
from mmjax.trainer.state import TrainState

Spec = dict[str, jax.ShapeDtypeStruct]


def say(line: str) -> None:
  """One line for the person watching, on stderr beside the progress bar (which it does not break); process 0."""
  if jax.process_index() == 0:
    tqdm.tqdm.write(line, file=sys.stderr)


def prepare_data(data_config: ml_collections.ConfigDict) -> None:
  """Generates the dataset on first use: process 0 writes it, the others wait and open it."""
  if jax.process_index() == 0:
    metadata = mmdata.prepare(data_config, announce=say).info.metadata or {}
    if metadata.get("num_bad_rows"):
      say(f"{metadata['num_bad_rows']} bad manifest row(s) are left out (config.data.skip_bad_rows): "
          + "; ".join(metadata["bad_rows"][:3]) + (" ..." if metadata["num_bad_rows"] > 3 else "") + ".")
  multihost_utils.sync_global_devices("mmjax_prepare_data")
  mmdata.prepare(data_config)


def check_batch_size(config: ml_collections.ConfigDict, mesh: Mesh, rules: sharding.Rules) -> int:
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


def _data_values(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The model fields that belong to the dataset: num_classes (of the task's label field) and sample_rate."""
  values = {"sample_rate": mmdata.sample_rate(config.data)}
  if "label" in config.task:
    names = mmdata.label_names(config.data)
    if config.task.label not in names:
      raise errors.ConfigError(f"config.task.label={config.task.label!r} is not a label field of the dataset "
                               f"{config.data.name!r}; its label fields: {sorted(names)}.")
    values["num_classes"] = len(names[config.task.label])
  return values


@dataclasses.dataclass
class Run:
  """What training, evaluation and benchmarks share, built from one config by `build_run`."""
  config: ml_collections.ConfigDict
  mesh: Mesh
  rules: sharding.Rules
  batch_size: int  # Per process.
  tokenizer: mmdata.Tokenizer
  task: tasks.Task
  tx: optax.GradientTransformation
  schedule: optax.Schedule
  init: Callable[[jax.Array], TrainState]  # rng → TrainState, params boxed with their logical axes.
  abstract: TrainState  # ShapeDtypeStructs carrying the state's shardings.
  state_sharding: Any

  def task_inputs(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The fields of a loader batch that the task reads."""
    return {k: v for k, v in batch.items() if k in self.task.batch_keys}

  def to_device(self, batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
    """This process's rows → global arrays split over the data-parallel axes."""
    return sharding.to_global_batch(batch, self.mesh, self.rules)

  def init_state(self) -> TrainState:
    """A fresh state, created already sharded (call inside `self.context()`)."""
    init = jax.jit(lambda rng: nn.unbox(self.init(rng)), out_shardings=self.state_sharding)
    return init(jax.random.PRNGKey(self.config.seed))

  @contextlib.contextmanager
  def context(self) -> Iterator[None]:
    """The mesh and logical-axis rules every traced function of the run needs."""
    with jax.set_mesh(self.mesh), nn.logical_axis_rules(self.rules):
      yield

  def jit_train_step(self) -> Callable:
    """(state, batch) → (state, metrics), jitted: the state donated and kept in its sharding, the batch split
    over the data-parallel axes, the metrics replicated."""
    return jax.jit(make_train_step(self.task, self.tx, self.schedule, self.config.grad_accum_steps,
                                   finetune.frozen_towers(self.config.freeze)),
                   donate_argnums=0, in_shardings=(self.state_sharding, sharding.batch_sharding(self.mesh, self.rules)),
                   out_shardings=(self.state_sharding, NamedSharding(self.mesh, P())))

  def build_evaluators(self) -> dict[str, evaluators.SplitEvaluator]:
    """The evaluators of `config.evals`, sharing predict_fns jitted once with replicated outputs."""
    predict_fns = {name: jax.jit(fn, out_shardings=NamedSharding(self.mesh, P()))
                   for name, fn in self.task.predict_fns().items()}
    return {key: evaluators.build(key, cfg, data_config=self.config.data, predict_fns=predict_fns,
                                  batch_size=self.config.eval_batch_size // jax.process_count(),
                                  to_device=self.to_device)
            for key, cfg in self.config.evals.items()}


def make_train_step(task: tasks.Task, tx: optax.GradientTransformation, schedule: optax.Schedule,
                    grad_accum_steps: int = 1, frozen: Sequence[str] = ()) -> Callable:
  """(state, batch) → (state, metrics): one optimizer step on the batch's gradient, computed over
  `grad_accum_steps` micro-batches (see mmjax.tasks.accumulation). The gradients of the `frozen` towers are
  replaced by zeros that do not depend on them, so XLA drops their backward pass (a locked tower costs its
  forward pass only) and `grad_norm` is the trainable parameters' norm."""
  def train_step(state: TrainState, batch: dict[str, jax.Array]) -> tuple[TrainState, dict]:
    rng = jax.random.fold_in(state.rng, state.step)
    (_, metrics), grads = task.value_and_grad(state.params, batch, rng, grad_accum_steps)
    grads = finetune.zero_frozen(grads, frozen)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {**metrics, "grad_norm": optax.global_norm(grads), "lr": schedule(state.step)}
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics
  return train_step


def build_task(config: ml_collections.ConfigDict, tokenizer: mmdata.Tokenizer | None = None) -> tasks.Task:
  """The task of `config` with its model, the dataset's values (classes, sample rate) filled in."""
  tokenizer = tokenizer or mmdata.get_tokenizer(config.data)
  return tasks.build(config, models.build(config.model, vocab_size=tokenizer.vocab_size, **_data_values(config)),
                     tokenizer)


def build_run(config: ml_collections.ConfigDict, devices: Sequence[jax.Device] | None = None,
              example: Spec | None = None) -> Run:
  """Builds everything of `config` but the arrays: checks the config against the devices and the dataset
  (generating it on first use), then lays the train state out on the mesh. `devices` defaults to all;
  `example` (one example's field shapes) to the dataset's (mmjax.data.element_spec)."""
  mesh = sharding.make_mesh(config.mesh, devices)
  rules = sharding.rules_for_mesh(config.sharding_rules, mesh)
  batch_size = check_batch_size(config, mesh, rules)
  prepare_data(config.data)
  feature_cache.ensure_image_features(config, mesh, rules, say)
  tokenizer = mmdata.get_tokenizer(config.data)
  for key, vocab_size in models.vocab_sizes(config.model).items():
    if 0 < vocab_size < tokenizer.vocab_size:
      raise errors.ConfigError(f"{key}={vocab_size} is smaller than the tokenizer's vocabulary "
                               f"({tokenizer.vocab_size}); raise it.")
  task = build_task(config, tokenizer)
  tx, schedule = optimizer.make_optimizer(config.optim, config.total_steps)
  tx = finetune.with_frozen_towers(tx, config.freeze)
  example = example if example is not None else mmdata.element_spec(config.data)
  missing = sorted(set(task.batch_keys) - set(example) - set(task.optional_keys))
  if missing:
    raise errors.ConfigError(f"The task reads batch fields {missing}, which dataset {config.data.name!r} does not "
                             f"have with this config.data; its fields: {sorted(example)}. Fix config.task or "
                             "config.data.")
  rows = tasks.zeros_like_rows(example, task.batch_keys)

  def init(rng: jax.Array) -> TrainState:
    params = task.init(rng, rows)["params"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params), rng=rng)

  boxed = jax.eval_shape(init, jax.random.PRNGKey(config.seed))
  state_sharding = sharding.logical_shardings(boxed, mesh, rules)
  abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), nn.unbox(boxed),
                          state_sharding)
  sharding.check_divisible(abstract.params)
  finetune.check_pretrained(config.model.to_dict(), abstract.params)
  return Run(config, mesh, rules, batch_size, tokenizer, task, tx, schedule, init, abstract, state_sharding)


def _checkpoint_dir(workdir: str) -> str:
  """`<workdir>/checkpoints`, checked for a finished step before anything is built."""
  directory = os.path.join(os.path.abspath(os.path.expanduser(workdir)), "checkpoints")
  if not has_checkpoint(directory):
    raise _no_checkpoint(workdir)
  return directory


def _no_checkpoint(workdir: str) -> errors.CheckpointError:
  return errors.CheckpointError(f"no checkpoint to evaluate in {workdir}; train first with "
                                f"python -m experiments.train --workdir={workdir} --config=...")


def restore(run: Run, directory: str) -> tuple[TrainState, int]:
  """(state, step) of the newest good checkpoint in `directory` (a workdir's checkpoints), arrays only (any
  process count). It writes nothing, as a run may be writing that workdir: it sees finished steps only (orbax
  renames a step into place once it is complete) and skips a bad one without moving it aside."""
  checkpointer = Checkpointer(directory, max_to_keep=None, read_only=True)
  try:
    restored = checkpointer.restore_latest(run.abstract, host_state=False)
  finally:
    checkpointer.close()
  if restored is None:
    raise _no_checkpoint(os.path.dirname(directory))
  state, _, step = restored
  return state, step


def load_state(config: ml_collections.ConfigDict, workdir: str,
               devices: Sequence[jax.Device] | None = None) -> TrainState:
  """The newest good TrainState of `workdir` (e.g. to explore a trained model in a notebook)."""
  directory = _checkpoint_dir(workdir)
  run = build_run(config, devices)
  with run.context():
    return restore(run, directory)[0]


def evaluate(config: ml_collections.ConfigDict, workdir: str, devices: Sequence[jax.Device] | None = None,
             predictions_dir: str | None = None) -> dict[str, float]:
  """Runs every evaluator of `config.evals` on the newest good checkpoint of `workdir`.

  With `predictions_dir`, the evaluators that can (VQA, captioning: `writes_examples`) also write one JSON line
  per example of their split to `<predictions_dir>/<eval key>.jsonl`: what the metrics count, example by example,
  for error analysis (which question types, words or compositions fail)."""
  directory = _checkpoint_dir(workdir)  # Before the run is built: a missing checkpoint is said at once.
  run = build_run(config, devices)
  with run.context():
    evaluators = run.build_evaluators()
    writing = {key for key, evaluator in evaluators.items() if evaluator.writes_examples and predictions_dir}
    if predictions_dir and not writing:
      raise errors.ConfigError(f"No eval of config.evals ({', '.join(evaluators) or 'none'}) writes per-example "
                               "predictions: they are written for VQA and captioning evals. Drop --predictions_dir.")
    state, step = restore(run, directory)
    results = {"step": step}
    for key, evaluator in evaluators.items():
      if key in writing:
        examples: list[dict[str, Any]] = []
        metrics = evaluator.run(state.params, examples)
        _write_examples(os.path.join(predictions_dir, f"{key}.jsonl"), examples)
      else:
        metrics = evaluator.run(state.params)
      results.update({f"eval/{key}/{k}": v for k, v in metrics.items()})
  return results


def _write_examples(path: str, examples: Sequence[dict[str, Any]]) -> None:
  """One JSON line per example, written by process 0 (every process holds every example's output)."""
  if jax.process_index() == 0:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
      f.writelines(json.dumps(example) + "\n" for example in examples)
