"""Pre-LayerNorm Transformer encoder."""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax.nn.attention import MultiHeadAttention
from mmjax.nn.mlp import MlpBlock
from mmjax.nn.partitioning import logical


def layer_norm(name: str, dtype: Any, param_dtype: Any) -> nn.LayerNorm:
  return nn.LayerNorm(name=name, dtype=dtype, param_dtype=param_dtype,
                      scale_init=logical(nn.initializers.ones, ("embed",)),
                      bias_init=logical(nn.initializers.zeros, ("embed",)))


class EncoderBlock(nn.Module):
  """x + Attn(LN(x)); x + MLP(LN(x)). x: [B, L, D], mask: bool[B|1, 1, L, L]."""
  num_heads: int
  mlp_dim: int
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array | None) -> jax.Array:
    y = layer_norm("ln_attn", self.dtype, self.param_dtype)(x)
    y = MultiHeadAttention(self.num_heads, self.dtype, self.param_dtype, name="attn")(y, y, mask)
    x = nn.with_logical_constraint(x + y, ("batch", "length", "embed"))
    y = layer_norm("ln_mlp", self.dtype, self.param_dtype)(x)
    y = MlpBlock(self.mlp_dim, self.dtype, self.param_dtype, name="mlp")(y)
    return nn.with_logical_constraint(x + y, ("batch", "length", "embed"))


class Encoder(nn.Module):
  """`depth` EncoderBlocks and a final LayerNorm. Returns [B, L, D]."""
  depth: int
  num_heads: int
  mlp_dim: int
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    for i in range(self.depth):
      x = EncoderBlock(self.num_heads, self.mlp_dim, self.dtype, self.param_dtype,
                       name=f"block_{i}")(x, mask)
    return layer_norm("ln_final", self.dtype, self.param_dtype)(x)
