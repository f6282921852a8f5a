"""Fine-tuning, in one place: pretrained checkpoints imported into a fresh model (`pretrained` of a model or
encoder config block, see mmjax.pretrained), `config.init_from` (towers loaded from an mmjax run) and
`config.freeze` (towers that get no updates).

A tower is a named subtree of the params (`image_encoder`, `audio_encoder`, `text_encoder`), found at any
depth, so a model that nests it loads the tower a TwoTower saved at its top level. `config.init_from` may name
several runs, separated by ':' as PATH separates directories ("runs/image:runs/audio"), each tower of the model
coming from the one run that has it; `{seed}` in it stands for the run's own `config.seed`, so each seed of a
sweep fine-tunes the pretrained run of its seed (`init_from_runs`).
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
import optax

from mmjax import errors, pretrained
from mmjax.trainer import checkpoint

TOWERS = {"image": "image_encoder", "audio": "audio_encoder", "text": "text_encoder", "video": "video_encoder"}
# Loaded whenever the pretrained run has them; the image, audio and video towers must fit, the text tower only
# where it does (a captioner's question encoder need not be shaped like the contrastive text tower it may start from).
REQUIRED_TOWERS = ("image_encoder", "audio_encoder", "video_encoder")
RUN_SEPARATOR = ":"


def parse_towers(value: str, key: str = "config.freeze") -> list[str]:
  """"image,text" → ["image_encoder", "text_encoder"]; "" → []."""
  names = [name.strip() for name in value.split(",") if name.strip()]
  unknown = [name for name in names if name not in TOWERS]
  if unknown:
    raise errors.ConfigError(f"{key}={value!r} names unknown towers {unknown}; known: {sorted(TOWERS)}.")
  return [TOWERS[name] for name in names]


def tower_paths(params: Mapping[str, Any], tower: str, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
  """Paths (tuples of keys) of every subtree of `params` named `tower`."""
  for key, value in params.items():
    if key == tower:
      yield prefix + (key,)
    elif isinstance(value, Mapping):
      yield from tower_paths(value, tower, prefix + (key,))


def _get(tree, path):
  for key in path:
    tree = tree[key]
  return tree


def _replace(tree: Mapping[str, Any], path: Sequence[str], value) -> dict[str, Any]:
  tree = dict(tree)
  tree[path[0]] = value if len(path) == 1 else _replace(tree[path[0]], path[1:], value)
  return tree


def _shapes(tree) -> tuple[Any, list[tuple[int, ...]]]:
  return jax.tree.structure(tree), [np.shape(leaf) for leaf in jax.tree.leaves(tree)]


def init_from_runs(init_from: str, seed: int) -> list[str]:
  """The workdirs of the pretrained runs `config.init_from` names: several are separated by RUN_SEPARATOR
  (':', as in PATH; an ablation's run directories hold ',' and '=' but never ':'), and `{seed}` in each is
  replaced by `seed`, the fine-tuning run's config.seed ("sweep/runs/pretrain=image,seed={seed}" at seed 2 →
  "sweep/runs/pretrain=image,seed=2")."""
  return [run.strip().replace("{seed}", str(seed)) for run in init_from.split(RUN_SEPARATOR) if run.strip()]


def check_init_from(workdir: str) -> str:
  """The checkpoint directory of the pretrained run `workdir` (one run of config.init_from); a ConfigError if
  it has no finished checkpoint. A training run checks this before it builds or writes anything."""
  directory = os.path.join(os.path.abspath(os.path.expanduser(workdir)), "checkpoints")
  if not checkpoint.has_checkpoint(directory):
    raise errors.ConfigError(f"config.init_from={workdir!r} has no checkpoint in {directory}; train that run "
                             "first, or fix the path.")
  return directory


def load_pretrained_params(workdir: str) -> tuple[dict[str, Any], int]:
  """(params as numpy arrays, step) of the newest good checkpoint of a pretrained `workdir`."""
  state, step = checkpoint.restore_newest(check_init_from(workdir))
  return jax.device_get(state["params"]), step


def load_towers(params: Mapping[str, Any], towers: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
  """`params` with every tower of `towers` (a pretrained run's params) copied in where the shapes fit.

  Returns (new params, paths loaded as "a/b/image_encoder"). Raises ConfigError if a
  REQUIRED_TOWERS tower exists in both but does not fit, or if nothing loads at all.
  """
  loaded = []
  for tower in TOWERS.values():
    if tower not in towers:
      continue
    for path in tower_paths(params, tower):
      if _shapes(_get(params, path)) == _shapes(towers[tower]):
        params = _replace(params, path, towers[tower])
        loaded.append("/".join(path))
      elif tower in REQUIRED_TOWERS:
        raise errors.ConfigError(f"The pretrained {tower} does not fit {'/'.join(path)}: make this model's "
                                 f"{tower.removesuffix('_encoder')} encoder config match the pretrained run's.")
      else:
        logging.warning("Not loading the pretrained %s into %s: its shapes differ.", tower, "/".join(path))
  if not loaded:
    raise errors.ConfigError(f"config.init_from: no tower of the pretrained run ({sorted(towers)}) exists in "
                             "this model.")
  return dict(params), loaded


def freeze_labels(params: Mapping[str, Any], frozen: Sequence[str]) -> Any:
  """A tree like `params` of "frozen" (leaves under a frozen tower) or "train" labels."""
  missing = [tower for tower in frozen if not any(tower_paths(params, tower))]
  if missing:
    raise errors.ConfigError(f"config.freeze names {missing}, which this model does not have.")

  def label(path, _):
    keys = {getattr(entry, "key", None) for entry in path}
    return "frozen" if keys & set(frozen) else "train"
  # A param still boxed with its logical axis names (as when the optimizer state is shaped
  # for sharding) is one leaf, so the labels stay a prefix of the boxed tree.
  return jax.tree_util.tree_map_with_path(label, params, is_leaf=lambda x: isinstance(x, nn.meta.AxisMetadata))


def frozen_towers(freeze: str) -> tuple[str, ...]:
  """The param subtree names `config.freeze` names ("image,text" → ("image_encoder", "text_encoder"))."""
  return tuple(parse_towers(freeze))


def zero_frozen(grads: Any, frozen: Sequence[str]) -> Any:
  """`grads` with every leaf under a `frozen` tower replaced by zeros made from its shape alone."""
  if not frozen:
    return grads
  labels = freeze_labels(grads, frozen)
  return jax.tree.map(lambda g, label: jax.numpy.zeros(g.shape, g.dtype) if label == "frozen" else g, grads, labels)


def with_frozen_towers(tx: optax.GradientTransformation, freeze: str) -> optax.GradientTransformation:
  """`tx` for every param but those under the towers `freeze` names ("image,text"), which get zero updates
  and no optimizer state (and whose gradients do not count towards the clipping norm)."""
  frozen = frozen_towers(freeze)
  if not frozen:
    return tx
  return optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()},
                               lambda params: freeze_labels(params, frozen))


def pretrained_blocks(model_config: Mapping[str, Any]) -> list[tuple[str, str, str, str | None]]:
  """(config key, module name, `pretrained` value, tower or None for the whole model) of every block of
  `config.model` that names a pretrained checkpoint: the model's own, its `image`/`text`/`audio` towers
  (TwoTower) and its `encoders.<modality>` (the fused models)."""
  found = []
  if model_config.get("pretrained"):
    found.append(("config.model.pretrained", model_config["name"], model_config["pretrained"], None))
  blocks = [(f"config.model.{m}", m, model_config[m]) for m in TOWERS if isinstance(model_config.get(m), Mapping)]
  blocks += [(f"config.model.encoders.{m}", m, block) for m, block in (model_config.get("encoders") or {}).items()]
  for key, modality, block in blocks:
    if block.get("pretrained"):
      found.append((f"{key}.pretrained", block["name"], block["pretrained"], TOWERS[modality]))
  return found


def check_pretrained(model_config: Mapping[str, Any], params: Mapping[str, Any] | None = None) -> None:
  """A ConfigError, before anything compiles, for a pretrained checkpoint that is missing, that no importer can
  read into its module, or (given the model's `params`, abstract shapes will do) whose shapes do not fit."""
  for key, module, value, tower in pretrained_blocks(model_config):
    importer = errors.lookup(pretrained.IMPORTERS, module, "module with a pretrained importer", key)
    path = pretrained.resolve(value, key)
    if params is not None:
      for tower_path in (tower_paths(params, tower) if tower else [()]):
        importer(path, _get(params, tower_path))


def _place(params: Any, params_sharding: Any) -> Any:
  """Host arrays → global arrays laid out as `params_sharding` (each process supplies its own shards)."""
  def place(leaf, leaf_sharding):
    if isinstance(leaf, jax.Array):
      return leaf
    return jax.make_array_from_callback(leaf.shape, leaf_sharding, lambda index: leaf[index])
  return jax.tree.map(place, params, params_sharding)


def load_pretrained(state: Any, model_config: Mapping[str, Any], state_sharding: Any) -> Any:
  """`state` with every pretrained checkpoint that `config.model` names imported into its params (each checked
  key by key against the configured module's shapes)."""
  params = state.params
  for key, module, value, tower in pretrained_blocks(model_config):
    importer = errors.lookup(pretrained.IMPORTERS, module, "module with a pretrained importer", key)
    path = pretrained.resolve(value, key)
    if tower is None:
      params = importer(path, params)
    for tower_path in (tower_paths(params, tower) if tower else ()):
      params = _replace(params, tower_path, importer(path, _get(params, tower_path)))
    logging.info("Imported %s into %s.", path, tower or "the model")
  return state.replace(params=_place(params, state_sharding.params))


def towers_by_run(params: Mapping[str, Any], runs: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
  """{tower: the run it loads from} for the towers `params` (this model's) has, given `runs` {workdir: that
  pretrained run's params}. A ConfigError for a tower of this model in two of the runs, or for a run that
  has none of them (naming a run that loads nothing is a mistake, not a no-op)."""
  model_towers = [tower for tower in TOWERS.values() if any(tower_paths(params, tower))]
  sources = {}
  for run, run_params in runs.items():
    towers = [tower for tower in model_towers if tower in run_params]
    if not towers:
      raise errors.ConfigError(f"config.init_from: {run} has none of this model's towers {model_towers} (it has "
                               f"{sorted(set(run_params) & set(TOWERS.values()))}).")
    for tower in towers:
      if tower in sources:
        raise errors.ConfigError(f"config.init_from: {tower} is in both {sources[tower]} and {run}; name only one "
                                 "run that has it.")
      sources[tower] = run
  return sources


def init_from(state: Any, init_from_value: str, seed: int, state_sharding: Any) -> Any:
  """`state` (a TrainState) with the towers of the newest checkpoints of the runs `init_from_value` names
  (config.init_from, see init_from_runs) loaded into its params, placed as `state_sharding` says (each
  process supplies its own shards)."""
  runs = {run: load_pretrained_params(run) for run in init_from_runs(init_from_value, seed)}
  sources = towers_by_run(state.params, {run: params for run, (params, _) in runs.items()})
  params = state.params
  for run, (run_params, step) in runs.items():
    params, loaded = load_towers(params, {tower: run_params[tower] for tower, source in sources.items()
                                          if source == run})
    logging.info("Initialised %s from step %d of %s.", ", ".join(loaded), step, run)
  return state.replace(params=_place(params, state_sharding.params))
