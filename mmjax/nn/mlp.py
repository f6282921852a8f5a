"""The Transformer feed-forward block."""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax.nn.partitioning import DEFAULT_KERNEL_INIT, logical


class MlpBlock(nn.Module):
  """Dense(mlp_dim) → GELU → Dense(D). x: [..., D] → [..., D]."""
  mlp_dim: int
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    features = x.shape[-1]
    x = nn.Dense(self.mlp_dim, dtype=self.dtype, param_dtype=self.param_dtype, name="fc1",
                 kernel_init=logical(DEFAULT_KERNEL_INIT, ("embed", "mlp")),
                 bias_init=logical(nn.initializers.zeros, ("mlp",)))(x)
    x = nn.with_logical_constraint(nn.gelu(x), ("batch", "length", "mlp"))
    return nn.Dense(features, dtype=self.dtype, param_dtype=self.param_dtype, name="fc2",
                    kernel_init=logical(DEFAULT_KERNEL_INIT, ("mlp", "embed")),
                    bias_init=logical(nn.initializers.zeros, ("embed",)))(x)
