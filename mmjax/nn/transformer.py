"""Pre-LayerNorm Transformer blocks: the encoder, and the decoder block with a KV cache."""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from mmjax import errors
from mmjax.nn.attention import MultiHeadAttention, causal_mask
from mmjax.nn.mlp import MlpBlock
from mmjax.nn.partitioning import logical


def layer_norm(name: str | None, dtype: Any, param_dtype: Any) -> nn.LayerNorm:
  """A LayerNorm with logical axis names; `name=None` inside `setup`, where the attribute names it."""
  return nn.LayerNorm(name=name, dtype=dtype, param_dtype=param_dtype,
                      scale_init=logical(nn.initializers.ones, ("embed",)),
                      bias_init=logical(nn.initializers.zeros, ("embed",)))


# What a block's backward pass keeps from its forward pass; the rest it recomputes. Less kept,
# less activation memory, at the cost of recomputation (`config.model.remat`).
REMAT_POLICIES = {
    "none": None,  # No remat: keep every activation.
    "full": jax.checkpoint_policies.nothing_saveable,  # Keep only the block's input; recompute the rest.
    "dots": jax.checkpoint_policies.checkpoint_dots,  # Keep matmul outputs; recompute norms, GELU, softmax.
    # Keep the weight matmuls' outputs, recompute attention's batched ones (the [B, H, L, L] logits).
    "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def rematerialized(block: type[nn.Module], policy: str) -> type[nn.Module]:
  """`block`, wrapped in nn.remat with the named policy (param paths are unchanged)."""
  errors.check_choice(policy, REMAT_POLICIES, "remat policy", "config.model.remat")
  if REMAT_POLICIES[policy] is None:
    return block
  return nn.remat(block, policy=REMAT_POLICIES[policy])


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
  """`depth` EncoderBlocks (rematerialized with the `remat` policy) and a final LayerNorm.
  Returns [B, L, D]."""
  depth: int
  num_heads: int
  mlp_dim: int
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  remat: str = "none"

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    block = rematerialized(EncoderBlock, self.remat)
    for i in range(self.depth):
      x = block(self.num_heads, self.mlp_dim, self.dtype, self.param_dtype, name=f"block_{i}")(x, mask)
    return layer_norm("ln_final", self.dtype, self.param_dtype)(x)


KeyValue = tuple[jax.Array, jax.Array]


class DecoderBlock(nn.Module):
  """x + SelfAttn(LN(x)) (causal); x + CrossAttn(LN(x), encoder); x + MLP(LN(x)).

  Keys and values of the encoder (`cross_kv`, from `cross_key_value`) are projected once
  per sequence, not once per generated token. With `cache` (this block's past keys and
  values, each [B, T, H, Dh]) and `index`, x is the one token at position `index`: its key
  and value are written into the cache and it attends to positions ≤ index, which gives
  the same result as the full causal pass over positions 0..index.
  """
  num_heads: int
  mlp_dim: int
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  def setup(self):
    norm = lambda: layer_norm(None, self.dtype, self.param_dtype)  # noqa: E731
    attention = lambda: MultiHeadAttention(self.num_heads, self.dtype, self.param_dtype)  # noqa: E731
    self.ln_self, self.self_attn = norm(), attention()
    self.ln_cross, self.cross_attn = norm(), attention()
    self.ln_mlp, self.mlp = norm(), MlpBlock(self.mlp_dim, self.dtype, self.param_dtype)

  def cross_key_value(self, encoded: jax.Array, heads_first: bool = False) -> KeyValue:
    """encoded: [B, N, D] → the cross-attention keys and values, each [B, N, H, D/H]
    ([B, H, N, D/H] if `heads_first`, the layout of the cached path)."""
    key, value = self.cross_attn.key_value(encoded)
    if heads_first:
      return key.transpose(0, 2, 1, 3), value.transpose(0, 2, 1, 3)
    return key, value

  def __call__(self, x: jax.Array, cross_kv: KeyValue, cross_mask: jax.Array,
               cache: KeyValue | None = None, index: jax.Array | None = None) -> tuple[jax.Array, KeyValue | None]:
    """x: [B, L, D] (L = 1 with a cache), cross_mask: bool[B, 1, 1, N] → (x, updated cache).

    With a cache, it and `cross_kv` are heads-first ([B, H, T, Dh]), see `attend`.
    """
    y = self.ln_self(x)
    key, value = self.self_attn.key_value(y)
    cached = cache is not None
    if cached:
      key = lax.dynamic_update_slice_in_dim(cache[0], key.transpose(0, 2, 1, 3).astype(cache[0].dtype), index, axis=2)
      value = lax.dynamic_update_slice_in_dim(cache[1], value.transpose(0, 2, 1, 3).astype(cache[1].dtype), index,
                                              axis=2)
      cache = (key, value)
      mask = (jnp.arange(key.shape[2]) <= index)[None, None, None, :]
    else:
      mask = causal_mask(x.shape[1])
    y = self.self_attn.attend(y, key, value, mask, heads_first=cached)
    x = nn.with_logical_constraint(x + y, ("batch", "length", "embed"))
    x = x + self.cross_attn.attend(self.ln_cross(x), *cross_kv, cross_mask, heads_first=cached)
    x = nn.with_logical_constraint(x, ("batch", "length", "embed"))
    x = nn.with_logical_constraint(x + self.mlp(self.ln_mlp(x)), ("batch", "length", "embed"))
    return x, cache
