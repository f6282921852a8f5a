"""Device mesh from config, logical-axis rules, and helpers to place data and params on it."""
from collections.abc import Mapping, Sequence
import math

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from mmjax import errors

Rules = Sequence[tuple[str, str | Sequence[str] | None]]


def make_mesh(mesh_config: Mapping[str, int], devices: Sequence[jax.Device] | None = None) -> Mesh:
  """{"data": -1, "fsdp": 2} → a Mesh over all devices; one axis may be -1 (= the rest)."""
  devices = list(jax.devices() if devices is None else devices)
  names, sizes = list(mesh_config.keys()), list(mesh_config.values())
  if sizes.count(-1) > 1:
    raise errors.ConfigError(f"config.mesh={dict(mesh_config)}: at most one axis may be -1.")
  known = math.prod(s for s in sizes if s != -1)
  if any(s == 0 or s < -1 for s in sizes) or len(devices) % known:
    raise errors.ConfigError(f"config.mesh={dict(mesh_config)} does not fit {len(devices)} devices: the "
                             "fixed axis sizes must be positive and divide the device count.")
  sizes = [len(devices) // known if s == -1 else s for s in sizes]
  if math.prod(sizes) != len(devices):
    raise errors.ConfigError(f"config.mesh={dict(mesh_config)} uses {math.prod(sizes)} devices but "
                             f"{len(devices)} are available; set one axis to -1 to use the rest.")
  return Mesh(np.asarray(devices).reshape(sizes), names)


def rules_for_mesh(rules: Rules, mesh: Mesh) -> list[tuple[str, str | tuple[str, ...] | None]]:
  """`rules` without the mesh axes `mesh` lacks, which is how a mesh without e.g. a `model` axis
  means "no tensor parallelism" (an absent axis is one of size 1)."""
  def present(axes):
    axes = (axes,) if isinstance(axes, str) else tuple(axes or ())
    kept = tuple(axis for axis in axes if axis in mesh.shape)
    return kept[0] if len(kept) == 1 else (kept or None)
  return [(name, present(axes)) for name, axes in rules]


def batch_axes(rules: Rules) -> tuple[str, ...]:
  """The mesh axes the logical 'batch' axis maps to (data parallelism)."""
  axes = dict(rules).get("batch")
  return () if axes is None else ((axes,) if isinstance(axes, str) else tuple(axes))


def data_parallel_size(mesh: Mesh, rules: Rules) -> int:
  return math.prod(mesh.shape[a] for a in batch_axes(rules))


def batch_sharding(mesh: Mesh, rules: Rules) -> NamedSharding:
  """Leading axis split over the data-parallel mesh axes, the rest replicated."""
  return NamedSharding(mesh, P(batch_axes(rules)))


def to_global_batch(batch: Mapping[str, np.ndarray], mesh: Mesh, rules: Rules) -> dict[str, jax.Array]:
  """This process's slice of the batch → global jax.Arrays sharded over the batch axes."""
  sharding = batch_sharding(mesh, rules)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in batch.items()}


def logical_shardings(abstract_tree, mesh: Mesh, rules: Rules):
  """NamedShardings for a pytree of (boxed) abstract values with logical axis names."""
  return nn.logical_to_mesh_sharding(nn.get_partition_spec(abstract_tree), mesh, list(rules))


def check_divisible(abstract_tree) -> None:
  """Raises ConfigError naming every array (ShapeDtypeStructs with NamedShardings) with a
  dimension its mesh axes do not split evenly, e.g. 2 attention heads over a 4-way `model` axis."""
  problems = []
  for path, leaf in jax.tree_util.tree_leaves_with_path(abstract_tree):
    mesh, spec = leaf.sharding.mesh, leaf.sharding.spec
    for dim, axes in enumerate(spec):
      axes = () if axes is None else ((axes,) if isinstance(axes, str) else tuple(axes))
      ways = math.prod(mesh.shape[axis] for axis in axes)
      if leaf.shape[dim] % ways:
        problems.append(f"{jax.tree_util.keystr(path)} {tuple(leaf.shape)}: dimension {dim} of size "
                        f"{leaf.shape[dim]} does not split over the {ways} devices of mesh axis "
                        f"{'×'.join(repr(a) for a in axes)}")
  if problems:
    raise errors.ConfigError("config.mesh and config.sharding_rules do not fit the model: " + "; ".join(problems[:5])
                             + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else "")
                             + ". Change the mesh axis sizes, map that logical axis to no mesh axis in "
                             "config.sharding_rules, or resize the model.")


def sharding_table(params, max_rows: int | None = None) -> str:
  """A readable per-parameter table: path, shape, and how it is sharded."""
  rows = []
  for path, leaf in jax.tree_util.tree_leaves_with_path(params):
    spec = getattr(getattr(leaf, "sharding", None), "spec", None)
    rows.append(f"{jax.tree_util.keystr(path):70s} {str(tuple(leaf.shape)):18s} {spec}")
  return "\n".join(rows[:max_rows])
