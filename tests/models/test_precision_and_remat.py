"""Remat policies change memory, not results; bfloat16 compute tracks float32 training."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from configs import shapes_caption, shapes_clip
from mmjax import data as mmdata
from mmjax import trainer


def _task(config):
  return trainer.build_task(config)


def _config(module, data_dir: str, **model_overrides):
  config = module.get_config("smoke")
  config.data.data_dir = data_dir
  config.model.update(model_overrides)
  return config


def _batches(config, batch_size: int, count: int, keys) -> list[dict[str, np.ndarray]]:
  loader = mmdata.train_loader(config.data, batch_size=batch_size, seed=0)
  return [{k: v for k, v in next(loader).items() if k in keys} for _ in range(count)]


def _grad_fn(task):
  return jax.jit(lambda params, batch: jax.value_and_grad(task.loss_fn, has_aux=True)(
      params, batch, jax.random.PRNGKey(0)))


def test_remat_keeps_params_loss_and_gradients(shapes_data_dir):
  """On the captioner (encoder and decoder blocks), with the policy that recomputes most: every
  policy is exact by construction, and the next test checks each one acts."""
  reference = _task(_config(shapes_caption, shapes_data_dir))
  batch = _batches(_config(shapes_caption, shapes_data_dir), 8, 1, reference.batch_keys)[0]
  params = nn.unbox(jax.jit(reference.init)(jax.random.PRNGKey(0), batch)["params"])
  (loss, _), grads = _grad_fn(reference)(params, batch)
  task = _task(_config(shapes_caption, shapes_data_dir, remat="full"))
  remat_params = nn.unbox(jax.eval_shape(task.init, jax.random.PRNGKey(0), batch)["params"])
  assert jax.tree.structure(remat_params) == jax.tree.structure(params)
  (remat_loss, _), remat_grads = _grad_fn(task)(params, batch)
  np.testing.assert_allclose(remat_loss, loss, rtol=1e-6)
  for got, expected in zip(jax.tree.leaves(remat_grads), jax.tree.leaves(grads)):
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-7)


def test_remat_policies_choose_what_the_backward_pass_recomputes(shapes_data_dir):
  """"full" recomputes every forward matmul of a block in the backward pass, "dots" none of them.

  Read off the program's matmul count, not its memory: XLA:CPU's scheduler does not turn
  remat into a lower peak (a chain of checkpointed layers measured 84 MB of temporaries
  without remat and 143 MB with), so the memory saving can only be measured on an accelerator.
  """
  matmuls = {}
  for policy in ("none", "full", "dots", "dots_no_batch"):
    task = _task(_config(shapes_clip, shapes_data_dir, remat=policy))
    batch = _batches(_config(shapes_clip, shapes_data_dir), 8, 1, task.batch_keys)[0]
    params = nn.unbox(jax.eval_shape(task.init, jax.random.PRNGKey(0), batch)["params"])
    matmuls[policy] = _grad_fn(task).lower(params, batch).as_text().count("dot_general")
  print(f"matmuls in the gradient program: {matmuls}")
  # The smoke two-tower applies 6 blocks (2 image, 2 text, 2 for the hard-negative texts) of 8
  # matmuls (q, k, v, logits, weighted sum, out, fc1, fc2); "full" recomputes all but fc2, whose
  # output no gradient needs.
  assert matmuls["full"] == matmuls["none"] + 6 * 7
  assert matmuls["dots"] == matmuls["none"]
  # Attention's two batched matmuls per block are recomputed, the weight matmuls kept.
  assert matmuls["dots_no_batch"] == matmuls["none"] + 6 * 2


def _train_losses(config, batches) -> np.ndarray:
  """The train loss of each batch, by the trainer's own init and step on one device."""
  run = trainer.build_run(config, devices=jax.devices()[:1])
  losses = []
  with run.context():
    state, step = run.init_state(), run.jit_train_step()
    for batch in batches:
      state, metrics = step(state, batch)
      losses.append(float(metrics["loss"]))
  return np.array(losses)


# bfloat16 keeps 8 bits of mantissa: each loss of the bf16 run stays within this fraction of the
# float32 run's over 12 steps of training (measured: about 1% at most).
BF16_LOSS_TOLERANCE = 0.03


def test_bfloat16_compute_tracks_float32(shapes_data_dir):
  config = _config(shapes_clip, shapes_data_dir)
  config.optim.warmup_steps = 5
  task = _task(config)
  batches = _batches(config, 16, 12, task.batch_keys)
  bf16 = _config(shapes_clip, shapes_data_dir, dtype="bfloat16")
  bf16.optim.warmup_steps = 5

  # Activations are bfloat16, weights and the loss float32.
  bf16_task = _task(bf16)
  params = nn.unbox(jax.eval_shape(bf16_task.init, jax.random.PRNGKey(0), batches[0])["params"])
  assert {x.dtype for x in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}
  (_, aux) = jax.eval_shape(lambda p, b: bf16_task.model.apply({"params": p}, b["image"], b["text"]),
                            params, batches[0])
  assert aux["image"]["tokens"].dtype == jnp.bfloat16 and aux["text"]["tokens"].dtype == jnp.bfloat16
  assert jax.eval_shape(bf16_task.loss_fn, params, batches[0], None)[0].dtype == jnp.float32

  float32_losses, bf16_losses = _train_losses(config, batches), _train_losses(bf16, batches)
  relative = np.abs(bf16_losses - float32_losses) / float32_losses
  print(f"bf16 vs f32 over {len(batches)} steps: max relative loss difference {relative.max():.3f}, "
        f"final losses {bf16_losses[-1]:.4f} vs {float32_losses[-1]:.4f}")
  assert float32_losses[-1] < 0.9 * float32_losses[0]  # It learns.
  assert relative.max() < BF16_LOSS_TOLERANCE
  assert not np.array_equal(bf16_losses, float32_losses)  # bf16 really computed in bf16.
