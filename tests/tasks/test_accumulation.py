"""Gradient accumulation gives the full batch's loss and gradient, for every task, also sharded;
naive accumulation of a contrastive loss does not (so the check can fail)."""
import flax.linen as nn
import jax
import numpy as np
import pytest

from configs import shapes_caption, shapes_clip, shapes_vqa
from mmjax import data as mmdata
from mmjax import trainer
from mmjax.parallel import sharding
from mmjax.tasks import accumulation
from tests.helpers import smoke_config

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("accumulation")]  # One worker: full-batch results shared.

BATCH, STEPS = 32, 4
CASES = {
    "contrastive_softmax": (shapes_clip, ""),
    "generation": (shapes_caption, ""),
    "classification": (shapes_vqa, "head=classifier"),
}


def _task_and_batch(data_dir: str, case: str):
  module, arg = CASES[case]
  config = module.get_config(",".join(filter(None, ["smoke", arg])))
  config.data.data_dir = data_dir
  task = trainer.build_task(config)
  batch = next(mmdata.train_loader(config.data, batch_size=BATCH, seed=0))
  batch = {k: v for k, v in batch.items() if k in task.batch_keys}
  params = jax.jit(task.init)(jax.random.PRNGKey(0), batch)["params"]
  return task, nn.unbox(params), batch


_full_batch = {}


def _full_batch_result(data_dir: str, case: str):
  """(task, params, batch, rng, ((loss, metrics), grads) of the full batch), computed once per case."""
  if case not in _full_batch:
    task, params, batch = _task_and_batch(data_dir, case)
    rng = jax.random.PRNGKey(1)
    _full_batch[case] = (task, params, batch, rng,
                         jax.jit(task.value_and_grad)(params, batch, rng))
  return _full_batch[case]


def _relative_difference(a, b) -> float:
  """Largest |a - b| over all leaves, relative to the largest |b|."""
  diff = max(float(np.abs(x - y).max()) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
  return diff / max(float(np.abs(y).max()) for y in jax.tree.leaves(b))


@pytest.mark.parametrize("case", list(CASES))
def test_accumulated_gradient_equals_full_batch(shapes_data_dir, case):
  task, params, batch, rng, ((loss, metrics), grads) = _full_batch_result(shapes_data_dir, case)
  (acc_loss, acc_metrics), acc_grads = jax.jit(task.value_and_grad, static_argnums=3)(params, batch, rng, STEPS)
  assert acc_metrics.keys() == metrics.keys()
  for key in metrics:
    np.testing.assert_allclose(acc_metrics[key], metrics[key], rtol=1e-5, err_msg=key)
  np.testing.assert_allclose(acc_loss, loss, rtol=1e-5)
  relative = _relative_difference(acc_grads, grads)
  print(f"{case}: accumulated over {STEPS} vs full batch {BATCH}: max gradient difference {relative:.1e}")
  assert relative < 1e-5


def test_naive_accumulation_of_a_contrastive_loss_is_wrong(shapes_data_dir):
  """Averaging micro-batch gradients draws negatives from each micro-batch only: not the full
  batch's gradient, which is why the contrastive task accumulates GradCache-style."""
  task, params, batch, rng, ((loss, _), grads) = _full_batch_result(shapes_data_dir, "contrastive_softmax")
  naive = accumulation.weighted_value_and_grad(task.loss_fn, accumulation.count_rows, STEPS)
  (naive_loss, _), naive_grads = jax.jit(naive)(params, batch, rng)
  assert naive_loss < loss - 0.1  # Fewer negatives: an easier problem.
  assert _relative_difference(naive_grads, grads) > 1e-2


def test_accumulation_on_a_sharded_batch(shapes_data_dir):
  """Micro-batches of a batch split over 8 devices (data × fsdp) give the full batch's gradient."""
  task, params, batch, rng, (_, grads) = _full_batch_result(shapes_data_dir, "contrastive_softmax")
  mesh = sharding.make_mesh({"data": 2, "fsdp": 4, "model": 1})
  rules = sharding.rules_for_mesh(smoke_config(shapes_data_dir).sharding_rules, mesh)
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    device_batch = sharding.to_global_batch(batch, mesh, rules)
    (_, _), sharded_grads = jax.jit(task.value_and_grad, static_argnums=3)(params, device_batch, rng, STEPS)
  assert _relative_difference(sharded_grads, grads) < 1e-5
