"""Mesh construction and how the logical rules meet it."""
import jax
import pytest

from configs import common
from mmjax import errors
from mmjax.parallel import sharding


def test_mesh_sizes_and_the_rest_axis():
  mesh = sharding.make_mesh({"data": -1, "fsdp": 2, "model": 2})
  assert dict(mesh.shape) == {"data": 2, "fsdp": 2, "model": 2}
  with pytest.raises(errors.ConfigError, match="at most one axis may be -1"):
    sharding.make_mesh({"data": -1, "fsdp": -1})


def test_rules_drop_the_axes_a_mesh_lacks():
  """A mesh without `model` (as in configs written before tensor parallelism) means no tensor
  parallelism, not an error."""
  mesh = sharding.make_mesh({"data": 2, "fsdp": 4}, jax.devices())
  rules = dict(sharding.rules_for_mesh(common.TRANSFORMER_SHARDING_RULES, mesh))
  assert rules["batch"] == ("data", "fsdp") and rules["embed"] == "fsdp"
  assert rules["heads"] is None and rules["mlp"] is None and rules["vocab"] is None
  assert sharding.data_parallel_size(mesh, list(rules.items())) == 8
  data_only = dict(sharding.rules_for_mesh(common.TRANSFORMER_SHARDING_RULES, sharding.make_mesh({"data": -1})))
  assert data_only["batch"] == "data" and data_only["embed"] is None
