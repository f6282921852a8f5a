"""What the trainer and the evaluators need from a task."""
from collections.abc import Callable
from typing import Any, Protocol

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax.tasks import accumulation

Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]


class Task(Protocol):
  """A loss and the predict functions evaluators use, for one model.

  `batch_keys` are the batch fields the task reads (a field it marks optional, such as a contrastive
  batch's `negative_text`, may be absent). Subclasses implement `init`, `loss_fn` and `predict_fns`;
  `loss_weight` and `value_and_grad` have defaults for a loss that is a mean over examples.
  """
  model: nn.Module
  batch_keys: tuple[str, ...]
  optional_keys: tuple[str, ...] = ()

  def init(self, rng: jax.Array, batch: Batch) -> dict[str, Any]:
    """The model's variables, shaped by `batch` (one example row is enough)."""
    ...

  def loss_fn(self, params: Any, batch: Batch, rng: jax.Array) -> tuple[jax.Array, Metrics]:
    """(loss, metrics including "loss") of a batch."""
    ...

  def predict_fns(self) -> dict[str, Callable]:
    """Pure functions of (params, inputs) that evaluators call, by name (embed_image, generate, classify, ...)."""
    ...

  def loss_weight(self, batch: Batch) -> jax.Array:
    """How many units (examples, target tokens) the batch's loss averages, to weigh micro-batches."""
    return accumulation.count_rows(batch)

  def value_and_grad(self, params: Any, batch: Batch, rng: jax.Array,
                     steps: int = 1) -> tuple[tuple[jax.Array, Metrics], Any]:
    """((loss, metrics), grads) of the batch, computed over `steps` micro-batches (mmjax.tasks.accumulation);
    equal to the full batch's for a loss that is a weighted mean of the micro-batches' losses."""
    if steps == 1:
      return jax.value_and_grad(self.loss_fn, has_aux=True)(params, batch, rng)
    return accumulation.weighted_value_and_grad(self.loss_fn, self.loss_weight, steps)(params, batch, rng)


def zeros_like_rows(spec: dict[str, jax.ShapeDtypeStruct], keys: tuple[str, ...], rows: int = 1) -> Batch:
  """A batch of `rows` zero rows of the fields `keys` that `spec` (one example's shapes) has."""
  return {k: jnp.zeros((rows, *spec[k].shape), spec[k].dtype) for k in keys if k in spec}
