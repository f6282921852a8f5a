"""Where a Predictor's params come from: a workdir's checkpoint, or a fresh model with its pretrained towers
imported; a model trained on precomputed image features gets its image tower back."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import ml_collections
import numpy as np

from mmjax import errors
from mmjax.trainer import finetune
from mmjax.trainer import run as run_lib


def with_image_tower(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`config`, or for a model trained on precomputed image features (config.data.image_features: a locked
  tower's outputs, computed once per split) a copy whose model runs that tower on the images it is given: new
  images have no precomputed features. The tower is the same function (the features were its outputs)."""
  block = config.data.get("image_features")
  if not block:
    return config
  if not block.get("pretrained"):
    raise errors.ConfigError("config.data.image_features names no `pretrained` checkpoint, so the tower that "
                             "computed the features cannot be rebuilt to predict on new images.")
  copy = ml_collections.ConfigDict(config.to_dict())
  for holder in (copy.model, copy.model.get("encoders") or {}):
    if holder.get("image") and holder.image.name == "features":
      holder.image = ml_collections.ConfigDict(block.to_dict())
  copy.data.image_features = None
  return copy


def _without(tree: Mapping[str, Any], paths: Sequence[tuple[str, ...]]) -> dict[str, Any]:
  """`tree` without the subtrees at `paths` (tuples of keys; () is the whole tree)."""
  if () in paths:
    return {}
  return {key: _without(value, [path[1:] for path in paths if path[0] == key])
          if any(path[0] == key for path in paths) else value for key, value in tree.items()}


def _with(tree: Mapping[str, Any], paths: Sequence[tuple[str, ...]], source: Mapping[str, Any]) -> Any:
  """`source` (a whole tree) with `tree`'s subtrees everywhere but at `paths` (`tree` as _without left it)."""
  if () in paths:
    return source
  return {key: _with(tree.get(key, {}), [path[1:] for path in paths if path[0] == key], source[key])
          if any(path[0] == key for path in paths) else tree[key] for key in source}


def fresh_params(run: run_lib.Run) -> Any:
  """The params of a fresh model with every `pretrained` checkpoint of the config imported (finetune.load_pretrained),
  equal to those of run.init_state() then load_pretrained. Only what no checkpoint fills is initialised: a random
  init that is then overwritten would cost its compile (17 s for EfficientNet-Lite0 and MiniLM on this CPU) and,
  through init_state, the optimizer state's memory."""
  model_config = run.config.model.to_dict()
  abstract = run.abstract.params
  imported = [path for _, _, _, tower in finetune.pretrained_blocks(model_config)
              for path in (finetune.tower_paths(abstract, tower) if tower else [()])]
  init = jax.jit(lambda rng: _without(nn.unbox(run.init(rng)).params, imported),
                 out_shardings=_without(run.state_sharding.params, imported))
  params = _with(init(jax.random.PRNGKey(run.config.seed)), imported, abstract)
  return finetune.load_pretrained(run.abstract.replace(params=params), model_config, run.state_sharding).params


def _shapes(tree: Any) -> dict[str, tuple[int, ...]]:
  return {jax.tree_util.keystr(path): np.shape(leaf) for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def with_pretrained_image_tower(run: run_lib.Run, saved: Mapping[str, Any], directory: str) -> Any:
  """The `saved` params of a model that read precomputed image features (every param but the image tower, which
  it had none of) with the image tower imported from the checkpoint its features came from; nothing else is
  imported or initialised. A CheckpointError if `saved` does not fit the rest of the model."""
  abstract = run.abstract.params
  tower = list(finetune.tower_paths(abstract, "image_encoder"))
  saved = jax.device_get(saved)
  stored, wanted = _shapes(saved), _shapes(_without(abstract, tower))
  if stored != wanted:
    first = sorted(key for key in stored.keys() | wanted.keys() if stored.get(key) != wanted.get(key))[0]
    raise errors.CheckpointError(f"Checkpoint {directory} does not fit this config: params{first} is "
                                 f"{stored.get(first, 'not stored')} in it but {wanted.get(first, 'not in the model')} "
                                 "with this config.")
  model = run.config.model.to_dict()
  image_only = ({"name": model["name"], "image": model["image"]} if "image" in model
                else {"name": model["name"], "encoders": {"image": model["encoders"]["image"]}})
  return finetune.load_pretrained(run.abstract.replace(params=_with(saved, tower, abstract)), image_only,
                                  run.state_sharding).params
