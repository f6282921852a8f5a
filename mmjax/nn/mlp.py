"""The Transformer feed-forward block, and the MLP head that turns a vector into class scores."""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax.nn.partitioning import dense


class MlpBlock(nn.Module):
  """Dense(mlp_dim) → GELU → Dense(D). x: [..., D] → [..., D]."""
  mlp_dim: int
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    features = x.shape[-1]
    x = dense(self.mlp_dim, ("embed", "mlp"), self.dtype, self.param_dtype, "fc1")(x)
    x = nn.with_logical_constraint(nn.gelu(x), ("batch", "length", "mlp"))
    return dense(features, ("mlp", "embed"), self.dtype, self.param_dtype, "fc2")(x)


class ClassifierHead(nn.Module):
  """[B, D] → Dense(mlp_dim) → GELU → Dense(num_classes) → f32[B, num_classes]."""
  mlp_dim: int
  num_classes: int
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = dense(self.mlp_dim, ("embed", "mlp"), self.dtype, self.param_dtype, "hidden")(x)
    x = nn.with_logical_constraint(nn.gelu(x), ("batch", "mlp"))
    return dense(self.num_classes, ("mlp", None), self.dtype, self.param_dtype, "logits")(x).astype(jnp.float32)
