"""The optax optimizer built from `config.optim`: gradient clipping, AdamW, warmup + cosine decay."""
import jax
import ml_collections
import optax

from mmjax import errors


def decay_mask(params):
  """Weight decay on matrices/kernels only: biases, norms, scalars and 1-D tables are spared."""
  return jax.tree.map(lambda p: p.ndim >= 2, params)


def check_optim_config(optim_config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError naming every out-of-range value of `config.optim`."""
  c = optim_config
  problems = [f"{name} must be {rule}; got {value!r}" for name, value, ok, rule in (
      ("lr", c.lr, c.lr > 0, "positive"),
      ("warmup_steps", c.warmup_steps, c.warmup_steps >= 0, "≥ 0"),
      ("weight_decay", c.weight_decay, c.weight_decay >= 0, "≥ 0"),
      ("b1", c.b1, 0 <= c.b1 < 1, "in [0, 1)"),
      ("b2", c.b2, 0 <= c.b2 < 1, "in [0, 1)"),
      ("end_lr_factor", c.end_lr_factor, 0 <= c.end_lr_factor <= 1, "in [0, 1]"),
      ("grad_clip_norm", c.grad_clip_norm, c.grad_clip_norm is None or c.grad_clip_norm >= 0,
       "≥ 0 (0 or None: no clipping)"),
  ) if not ok]
  groups = c.get("grad_clip_groups")
  if groups and (isinstance(groups, str) or not all(isinstance(g, str) and g for g in groups)):
    problems.append(f"grad_clip_groups must be a tuple of parameter-name prefixes, e.g. ('itm_',); got {groups!r}")
  if problems:
    raise errors.ConfigError("; ".join(f"config.optim.{p}" for p in problems) + ".")


_REST = "(the rest)"  # The label of parameters in no clip group.


def clip_gradients(max_norm: float, groups: tuple[str, ...] = ()) -> optax.GradientTransformation:
  """Clipping by global norm, computed over all gradients, or, with `groups` (prefixes of top-level parameter
  names), over each group on its own and the remaining parameters together.

  Why groups: one global norm couples every part of the model. A head trained on detached features (e.g. the
  ITM head with `itm_trains_towers=False`, group "itm_") would otherwise shrink the towers' updates whenever its
  gradient is large, changing how the towers learn although no gradient of its loss reaches them.
  """
  if not groups:
    return optax.clip_by_global_norm(max_norm)

  def labels(params):
    unmatched = [prefix for prefix in groups if not any(name.startswith(prefix) for name in params)]
    if unmatched:
      raise errors.ConfigError(f"config.optim.grad_clip_groups {unmatched} match no parameter of this model; its "
                               f"top-level parameters: {sorted(params)}.")

    def label_tree(name: str, subtree):  # Every leaf under `name`: its group's label.
      label = next((prefix for prefix in groups if name.startswith(prefix)), _REST)
      return jax.tree.map(lambda _: label, subtree)
    return {name: label_tree(name, subtree) for name, subtree in params.items()}
  return optax.multi_transform({label: optax.clip_by_global_norm(max_norm) for label in (_REST, *groups)}, labels)


def make_schedule(optim_config: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
  warmup = optim_config.warmup_steps
  if warmup >= total_steps:
    raise errors.ConfigError(f"config.optim.warmup_steps={warmup} must be smaller than total_steps={total_steps}.")
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=optim_config.lr, warmup_steps=warmup,
      decay_steps=total_steps, end_value=optim_config.lr * optim_config.end_lr_factor)


def make_optimizer(optim_config: ml_collections.ConfigDict,
                   total_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """Gradient clipping (`grad_clip_norm`; per group with the optional `grad_clip_groups`: clip_gradients) →
  AdamW with warmup + cosine schedule and a decay mask. (Frozen towers are
  mmjax.trainer.finetune's: it wraps this optimizer.)"""
  check_optim_config(optim_config)
  schedule = make_schedule(optim_config, total_steps)
  parts = []
  if optim_config.grad_clip_norm:
    parts.append(clip_gradients(optim_config.grad_clip_norm, tuple(optim_config.get("grad_clip_groups") or ())))
  parts.append(optax.adamw(schedule, b1=optim_config.b1, b2=optim_config.b2,
                           weight_decay=optim_config.weight_decay, mask=decay_mask))
  return optax.chain(*parts), schedule
