"""Transformer blocks: the encoder (pre-LayerNorm as in ViT/CLIP, or post-LayerNorm as in BERT), and the
pre-LayerNorm decoder block with a KV cache."""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from mmjax import errors
from mmjax.nn.attention import MultiHeadAttention, causal_mask
from mmjax.nn.mlp import MlpBlock
from mmjax.nn.partitioning import logical


def layer_norm(name: str | None, dtype: Any, param_dtype: Any, epsilon: float = 1e-6) -> nn.LayerNorm:
  """A LayerNorm with logical axis names; `name=None` inside `setup`, where the attribute names it.
  `epsilon` is flax's 1e-6 for models trained here; an imported checkpoint brings its own (BERT 1e-12, CLIP 1e-5)."""
  return nn.LayerNorm(name=name, dtype=dtype, param_dtype=param_dtype, epsilon=epsilon,
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


NORM_POSITIONS = ("pre", "post")


class EncoderBlock(nn.Module):
  """norm="pre": x + Attn(LN(x)); x + MLP(LN(x)) (ViT, CLIP). norm="post": LN(x + Attn(x)); LN(x + MLP(x)) (BERT).
  x: [B, L, D], mask: bool[B|1, 1, L, L]. The LayerNorms are `ln_attn` and `ln_mlp` either way."""
  num_heads: int
  mlp_dim: int
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  norm: str = "pre"
  activation: str = "gelu"
  epsilon: float = 1e-6

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array | None) -> jax.Array:
    errors.check_choice(self.norm, NORM_POSITIONS, "norm position")
    pre = self.norm == "pre"
    ln_attn = layer_norm("ln_attn", self.dtype, self.param_dtype, self.epsilon)
    ln_mlp = layer_norm("ln_mlp", self.dtype, self.param_dtype, self.epsilon)
    y = ln_attn(x) if pre else x
    y = MultiHeadAttention(self.num_heads, self.dtype, self.param_dtype, name="attn")(y, y, mask)
    x = x + y if pre else ln_attn(x + y)
    x = nn.with_logical_constraint(x, ("batch", "length", "embed"))
    y = MlpBlock(self.mlp_dim, self.dtype, self.param_dtype, self.activation, name="mlp")(ln_mlp(x) if pre else x)
    x = x + y if pre else ln_mlp(x + y)
    return nn.with_logical_constraint(x, ("batch", "length", "embed"))


class Encoder(nn.Module):
  """`depth` EncoderBlocks (rematerialized with the `remat` policy) and, if `final_norm`, a final LayerNorm
  (pre-LN stacks need one; a post-LN stack such as BERT ends normalised). Returns [B, L, D]."""
  depth: int
  num_heads: int
  mlp_dim: int
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  remat: str = "none"
  norm: str = "pre"
  activation: str = "gelu"
  epsilon: float = 1e-6
  final_norm: bool = True

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    block = rematerialized(EncoderBlock, self.remat)
    for i in range(self.depth):
      x = block(self.num_heads, self.mlp_dim, self.dtype, self.param_dtype, self.norm, self.activation,
                self.epsilon, name=f"block_{i}")(x, mask)
    if not self.final_norm:
      return x
    return layer_norm("ln_final", self.dtype, self.param_dtype, self.epsilon)(x)


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
