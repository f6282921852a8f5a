"""What every evaluator shares: one pass over a split through a jitted predict function."""
from collections.abc import Callable, Iterable, Mapping

import jax
import numpy as np
from jax.experimental import multihost_utils

from mmjax import errors

Batch = Mapping[str, np.ndarray]


def numeric_fields(batch: Batch) -> dict[str, np.ndarray]:
  """Drops string fields (captions), which cannot become jax.Arrays."""
  return {k: v for k, v in batch.items() if np.asarray(v).dtype.kind in "biuf"}


def predict_over(batches: Iterable[Batch], predict: Callable[[Batch], jax.Array],
                 to_device: Callable[[Batch], dict[str, jax.Array]]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
  """Runs `predict` on every batch and keeps the valid rows.

  Returns (outputs [N, ...], fields) where fields are the numeric batch fields of the same
  N examples, gathered over processes in the same order as the global batch.
  """
  outputs, fields = [], []
  for batch in batches:
    local = numeric_fields(batch)
    outputs.append(np.asarray(predict(to_device(local))))
    fields.append(multihost_utils.process_allgather(local, tiled=True))
  if not outputs:
    raise errors.InputError("The evaluation split produced no batches; check config.evals and the data split.")
  gathered = {k: np.concatenate([f[k] for f in fields]) for k in fields[0]}
  valid = gathered.pop("valid").astype(bool)
  return np.concatenate(outputs)[valid], {k: v[valid] for k, v in gathered.items()}
