"""Gradient accumulation: a batch's gradient computed over micro-batches, equal to the full batch's.

`config.grad_accum_steps` = M splits each batch into M micro-batches run one after another, so
activation memory is that of B/M examples. For a loss that is a mean (over examples, or over
target tokens) the full-batch gradient is the weighted mean of the micro-batch gradients,
each weighted by how many units its loss averages (`task.loss_weight`). A loss whose terms
couple examples, such as a contrastive loss whose negatives are the rest of the batch, is not
such a mean; a task then overrides `Task.value_and_grad` (see ContrastiveTask's, which follows
GradCache).
"""
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

ValueAndGrad = Callable[..., tuple[tuple[jax.Array, dict], dict]]


def split_micro_batches(batch: dict[str, jax.Array], steps: int) -> dict[str, jax.Array]:
  """[B, ...] → [steps, B/steps, ...], micro-batch m holding rows m, m + steps, m + 2·steps, ….

  Strided rather than contiguous: the batch is split over devices in contiguous blocks, so
  every micro-batch then takes an equal share of every device's rows and keeps all of them busy.
  """
  def split(x):
    x = x.reshape(x.shape[0] // steps, steps, *x.shape[1:]).swapaxes(0, 1)
    return nn.with_logical_constraint(x, (None, "batch") + (None,) * (x.ndim - 2))
  return jax.tree.map(split, batch)


def count_rows(batch: dict[str, jax.Array]) -> jax.Array:
  """The default loss weight: the number of examples (the loss is a mean over them)."""
  return jnp.asarray(jax.tree.leaves(batch)[0].shape[0], jnp.float32)


def weighted_value_and_grad(loss_fn: Callable, loss_weight: Callable, steps: int) -> ValueAndGrad:
  """value_and_grad of `loss_fn` (params, batch, rng) → (loss, metrics) over `steps` micro-batches.

  Loss, metrics and gradients are averaged with weights `loss_weight(micro_batch)`, which gives
  the full-batch values when the loss and the metrics are means over those units.
  """
  def value_and_grad(params, batch, rng):
    def micro_step(totals, micro):
      index, micro_batch = micro
      weight = loss_weight(micro_batch)
      (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, micro_batch,
                                                                     jax.random.fold_in(rng, index))
      scale = lambda tree: jax.tree.map(lambda x: x * weight.astype(x.dtype), tree)  # noqa: E731
      return jax.tree.map(jnp.add, totals, (scale(metrics), scale(grads), weight)), None

    micro_batches = split_micro_batches(batch, steps)
    metrics_shape = jax.eval_shape(loss_fn, params, jax.tree.map(lambda x: x[0], micro_batches), rng)[1]
    zeros = lambda tree: jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), tree)  # noqa: E731
    totals = (zeros(metrics_shape), zeros(params), jnp.zeros((), jnp.float32))
    (metrics, grads, weight), _ = lax.scan(micro_step, totals, (jnp.arange(steps), micro_batches))
    metrics, grads = jax.tree.map(lambda x: x / weight.astype(x.dtype), (metrics, grads))
    return (metrics["loss"], metrics), grads
  return value_and_grad
