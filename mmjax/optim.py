"""The optax optimizer built from `config.optim`."""
import jax
import ml_collections
import optax


def decay_mask(params):
  """Weight decay on matrices/kernels only: biases, norms, scalars and 1-D tables are spared."""
  return jax.tree.map(lambda p: p.ndim >= 2, params)


def make_schedule(optim_config: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
  warmup = optim_config.warmup_steps
  if warmup >= total_steps:
    raise ValueError(f"config.optim.warmup_steps={warmup} must be smaller than total_steps={total_steps}.")
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=optim_config.lr, warmup_steps=warmup,
      decay_steps=total_steps, end_value=optim_config.lr * optim_config.end_lr_factor)


def make_optimizer(optim_config: ml_collections.ConfigDict,
                   total_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """Gradient clipping → AdamW with warmup + cosine schedule and a decay mask."""
  if optim_config.lr <= 0:
    raise ValueError(f"config.optim.lr must be positive; got {optim_config.lr}.")
  schedule = make_schedule(optim_config, total_steps)
  parts = []
  if optim_config.grad_clip_norm:
    parts.append(optax.clip_by_global_norm(optim_config.grad_clip_norm))
  parts.append(optax.adamw(schedule, b1=optim_config.b1, b2=optim_config.b2,
                           weight_decay=optim_config.weight_decay, mask=decay_mask))
  return optax.chain(*parts), schedule

