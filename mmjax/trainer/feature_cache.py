"""Computes the precomputed image features `config.data.image_features` asks for (mmjax.data.features), once per
tower, dataset and split, before a run is built: the run's example shapes already read them."""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from mmjax import data as mmdata
from mmjax import models, pretrained
from mmjax.data import features
from mmjax.evaluators.common import predict_over
from mmjax.parallel import sharding


def splits_needed(config: ml_collections.ConfigDict) -> list[str]:
  """The training split and every split an evaluator reads (its `split`, and a linear probe's `train_split`)."""
  splits = {mmdata.train_split(config.data)}
  for evaluator in config.evals.values():
    splits |= {evaluator[key] for key in ("split", "train_split") if key in evaluator}
  return sorted(splits)


def _tower(block: ml_collections.ConfigDict, image_shape: tuple[int, ...]) -> Callable[[jax.Array], jax.Array]:
  """images → the tower's pooled features; params imported from the block's `pretrained` checkpoint (else a
  fixed random init: a locked random tower is a baseline too)."""
  encoder = models.build_encoder("image", block.to_dict())
  example = jnp.zeros((1, *image_shape), jnp.float32)
  if block.get("pretrained"):
    expected = jax.eval_shape(encoder.init, jax.random.PRNGKey(0), example)["params"]
    params = pretrained.IMPORTERS[block.name](
        pretrained.resolve(block.pretrained, "config.data.image_features.pretrained"), expected)
  else:
    params = encoder.init(jax.random.PRNGKey(0), example)["params"]
  apply = jax.jit(lambda params, image: encoder.apply({"params": params}, image)[0].astype(jnp.float32))
  return lambda image: apply(params, image)


def _numbered(batches: Iterator[dict[str, np.ndarray]], start: int) -> Iterator[dict[str, np.ndarray]]:
  """Each batch with `position`, the record index of each row (this process's shard starts at `start`), so the
  rows gathered from every process go back into record order."""
  for batch in batches:
    yield {**batch, "position": np.arange(start, start + len(batch["valid"]), dtype=np.int32)}
    start += len(batch["valid"])


def ensure_image_features(config: ml_collections.ConfigDict, mesh: Mesh, rules: sharding.Rules,
                          say: Callable[[str], None]) -> None:
  """Writes the feature file of every split the run reads that has none yet (all processes take part; process
  0 writes, to a temporary file renamed into place, so an interrupted run leaves no partial file)."""
  block = config.data.get("image_features")
  if not block:
    return
  # The images as the tower sees them: every record of the split, in order.
  source_config = ml_collections.ConfigDict(config.data.to_dict())
  source_config.image_features, source_config.classes = None, ""
  tower = None
  image_shape = mmdata.element_spec(source_config)["image"].shape
  for split in splits_needed(config):
    path = features.cache_path(config.data, split)
    if os.path.isfile(path):
      continue
    tower = tower or _tower(block, image_shape)
    count = mmdata.num_examples(source_config, split)
    say(f"Computing the {block.name} features of {count} {split} images once, into {path}...")
    start = time.time()
    batches = mmdata.eval_batches(source_config, split, batch_size=config.eval_batch_size // jax.process_count())
    with jax.set_mesh(mesh):
      outputs, fields = predict_over(_numbered(batches, count * jax.process_index() // jax.process_count()),
                                     lambda batch, tower=tower: tower(batch["image"]),
                                     lambda batch: sharding.to_global_batch(batch, mesh, rules), keep=("position",))
    rows = np.empty_like(outputs)
    rows[fields["position"]] = outputs
    if jax.process_index() == 0:
      os.makedirs(os.path.dirname(path), exist_ok=True)
      partial = f"{path}.partial-{os.getpid()}.npy"
      np.save(partial, rows.astype(np.float32))
      os.replace(partial, path)
    multihost_utils.sync_global_devices(f"mmjax_image_features_{split}")
    say(f"Computed {len(rows)} {split} features in {time.time() - start:.0f} s ({len(rows) / (time.time() - start):.0f}"
        " images/s).")
