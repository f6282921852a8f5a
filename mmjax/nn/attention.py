"""Multi-head dot-product attention with logical axis names and explicit masks."""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax import errors
from mmjax.nn.partitioning import logical

Dtype = Any


def attention_mask(query_valid: jax.Array, key_valid: jax.Array) -> jax.Array:
  """bool[B, 1, Q, K]: True where query q may attend key k (both valid)."""
  return query_valid[:, None, :, None] & key_valid[:, None, None, :]


def causal_mask(length: int) -> jax.Array:
  """bool[1, 1, L, L]: True where key position ≤ query position."""
  return jnp.tril(jnp.ones((length, length), dtype=bool))[None, None]


class MultiHeadAttention(nn.Module):
  """Attention of `inputs_q` over `inputs_kv`.

  inputs_q: [B, Q, D], inputs_kv: [B, K, D], mask: bool broadcastable to [B, H, Q, K].
  Returns [B, Q, D]. Softmax runs in float32 whatever the compute dtype.
  """
  num_heads: int
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, inputs_q: jax.Array, inputs_kv: jax.Array,
               mask: jax.Array | None = None) -> jax.Array:
    features = inputs_q.shape[-1]
    if features % self.num_heads:
      raise errors.ConfigError(f"Attention width {features} is not divisible by num_heads={self.num_heads}; "
                               "pick a width that is a multiple of the number of heads.")
    head_dim = features // self.num_heads

    def param(name, shape, names, init):
      return self.param(name, logical(init, names), shape, self.param_dtype).astype(self.dtype)

    # Kernels are created in their [D, H, Dh] / [H, Dh, D] shapes (not flattened, as nn.DenseGeneral
    # does) so their logical axis names apply; Xavier fan-in/out count whole heads.
    qkv_init = nn.initializers.xavier_uniform(in_axis=0, out_axis=(1, 2))

    def project(name, x):
      kernel = param(f"{name}_kernel", (features, self.num_heads, head_dim), ("embed", "heads", "kv"), qkv_init)
      bias = param(f"{name}_bias", (self.num_heads, head_dim), ("heads", "kv"), nn.initializers.zeros)
      return jnp.einsum("bld,dhk->blhk", x.astype(self.dtype), kernel) + bias

    query = project("query", inputs_q) / jnp.sqrt(head_dim).astype(self.dtype)
    key = project("key", inputs_kv)
    value = project("value", inputs_kv)
    logits = jnp.einsum("bqhd,bkhd->bhqk", query, key).astype(jnp.float32)
    if mask is not None:
      logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
    weights = jax.nn.softmax(logits, axis=-1).astype(self.dtype)
    attended = jnp.einsum("bhqk,bkhd->bqhd", weights, value)
    out_kernel = param("out_kernel", (self.num_heads, head_dim, features), ("heads", "kv", "embed"),
                       nn.initializers.xavier_uniform(in_axis=(0, 1), out_axis=2))
    out_bias = param("out_bias", (features,), ("embed",), nn.initializers.zeros)
    return jnp.einsum("bqhk,hkd->bqd", attended, out_kernel) + out_bias
