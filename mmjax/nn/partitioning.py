"""Initialisers that carry logical axis names, so weights shard by the config's rules."""
from collections.abc import Sequence

import flax.linen as nn

DEFAULT_KERNEL_INIT = nn.initializers.xavier_uniform()


def logical(init, names: Sequence[str | None]):
  """Wraps an initializer so the created param is boxed with logical axis `names`."""
  return nn.with_logical_partitioning(init, tuple(names))
