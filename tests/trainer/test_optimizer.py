"""Gradient clipping by group: a large gradient in one group leaves the other groups' clipping unchanged."""
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import common
from mmjax import errors
from mmjax.trainer import optimizer


def _clipped(groups: tuple[str, ...]) -> dict:
  grads = {"tower": {"kernel": jnp.full((2, 2), 0.25)},  # Global norm 0.5: under the limit on its own.
           "itm_head": {"kernel": jnp.full((2,), 30.0)}}
  transform = optimizer.clip_gradients(1.0, groups)
  return transform.update(grads, transform.init(grads))[0]


def test_a_group_is_clipped_on_its_own_norm():
  clipped = _clipped(("itm_",))
  np.testing.assert_allclose(clipped["tower"]["kernel"], 0.25)  # Untouched by the head's norm.
  np.testing.assert_allclose(np.linalg.norm(clipped["itm_head"]["kernel"]), 1.0, rtol=1e-6)


def test_without_groups_one_global_norm_scales_everything():
  clipped = _clipped(())
  total = np.sqrt(4 * 0.25**2 + 2 * 30.0**2)
  np.testing.assert_allclose(clipped["tower"]["kernel"], 0.25 / total, rtol=1e-6)


def test_the_optimizer_clips_by_the_configs_groups():
  params = {"tower": {"kernel": jnp.ones((2, 2))}, "itm_head": {"kernel": jnp.ones((2,))}}
  for groups, state_type in (((), optax.EmptyState), (("itm_",), optax.MultiTransformState)):
    config = common.optim(lr=1e-3, warmup_steps=1, weight_decay=0.0, grad_clip_groups=groups)
    state = optimizer.make_optimizer(config, total_steps=10)[0].init(params)
    assert isinstance(state[0], state_type)


def test_bad_clip_groups_are_named():
  with pytest.raises(errors.ConfigError, match=r"grad_clip_groups must be a tuple of parameter-name prefixes"):
    optimizer.check_optim_config(common.optim(lr=1e-3, warmup_steps=1, weight_decay=0.0, grad_clip_groups="itm_"))
  with pytest.raises(errors.ConfigError, match=r"grad_clip_groups \['head_'\] match no parameter .* \['tower'\]"):
    optimizer.clip_gradients(1.0, ("head_",)).init({"tower": jnp.ones(2)})
