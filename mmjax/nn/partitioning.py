"""Initialisers and layers that carry logical axis names, so weights shard by the config's rules."""
from collections.abc import Sequence
from typing import Any

import flax.linen as nn

DEFAULT_KERNEL_INIT = nn.initializers.xavier_uniform()


def logical(init, names: Sequence[str | None]):
  """Wraps an initializer so the created param is boxed with logical axis `names`."""
  return nn.with_logical_partitioning(init, tuple(names))


def dense(features: int, axes: tuple[str | None, str | None], dtype: Any, param_dtype: Any,
          name: str | None = None, use_bias: bool = True, kernel_init=DEFAULT_KERNEL_INIT) -> nn.Dense:
  """nn.Dense whose kernel has the logical `axes` (input, output) and whose bias has the output's.
  `name=None` inside `setup`, where the attribute names it."""
  return nn.Dense(features, dtype=dtype, param_dtype=param_dtype, name=name, use_bias=use_bias,
                  kernel_init=logical(kernel_init, axes), bias_init=logical(nn.initializers.zeros, axes[1:]))
