"""Multi-head dot-product attention with logical axis names, explicit masks and reusable keys/values.

Its config checks run as the module is traced, e.g. in the jax.eval_shape that lays out a run's state before any
array exists: every model with attention (ViT, text, audio, fusion, decoder) gets them, from the shapes it is
actually given, and an impossible value is a ConfigError before anything is allocated or compiled.
"""
import functools
import os
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


@functools.cache
def _memory_bytes() -> tuple[int, str]:
  """(bytes, what) of the memory one device's arrays can use: its allocator's limit, else (CPU) the host's RAM."""
  device = jax.local_devices()[0]
  limit = (device.memory_stats() or {}).get("bytes_limit")
  if limit:
    return limit, f"{device.platform.upper()} device"
  return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "host's RAM"


def _check_scores_fit(num_heads: int, queries: int, keys: int, where: str) -> None:
  """A ConfigError if the float32 attention scores of ONE example ([heads, queries, keys]) exceed the device's
  memory: no batch size, micro-batching or remat can then fit (e.g. a text length of 100,000 tokens)."""
  needed = 4 * num_heads * queries * keys
  memory, what = _memory_bytes()
  if needed > memory:
    raise errors.ConfigError(
        f"Attention over {queries:,} x {keys:,} positions ({where}) needs {needed / 2**30:,.0f} GiB for the scores "
        f"of a single example ({num_heads} heads, float32), more than the {memory / 2**30:,.0f} GiB of the {what}; "
        "shorten the sequence (e.g. config.data.text_len, a max_len, or a larger patch).")


def _where(module: nn.Module) -> str:
  """The module's path in the model ("text_encoder/encoder/block_0/attn"), which names the tower at fault."""
  return "/".join(module.path) or type(module).__name__


def causal_mask(length: int) -> jax.Array:
  """bool[1, 1, L, L]: True where key position ≤ query position."""
  return jnp.tril(jnp.ones((length, length), dtype=bool))[None, None]


class HeadProjection(nn.Module):
  """x: [B, L, D] → [B, L, H, D/H]. The kernel is created in its [D, H, Dh] shape (not flattened,
  as nn.DenseGeneral does) so its logical axis names apply; Xavier fan-in/out count whole heads."""
  num_heads: int
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    features, where = x.shape[-1], _where(self)
    if features <= 0:
      raise errors.ConfigError(f"Attention width {features} ({where}) must be positive.")
    if self.num_heads <= 0 or features % self.num_heads:
      divisors = [n for n in range(1, features + 1) if features % n == 0]
      raise errors.ConfigError(f"Attention width {features} is not divisible by num_heads={self.num_heads} "
                               f"({where}); heads that divide it: {divisors}.")
    shape = (features, self.num_heads, features // self.num_heads)
    kernel = self.param("kernel", logical(nn.initializers.xavier_uniform(in_axis=0, out_axis=(1, 2)),
                                          ("embed", "heads", "kv")), shape, self.param_dtype)
    bias = self.param("bias", logical(nn.initializers.zeros, ("heads", "kv")), shape[1:], self.param_dtype)
    return jnp.einsum("bld,dhk->blhk", x.astype(self.dtype), kernel.astype(self.dtype)) + bias.astype(self.dtype)


class HeadMerge(nn.Module):
  """[B, L, H, Dh] → [B, L, H*Dh]: the output projection of attention."""
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    num_heads, head_dim = x.shape[-2:]
    kernel = self.param("kernel", logical(nn.initializers.xavier_uniform(in_axis=(0, 1), out_axis=2),
                                          ("heads", "kv", "embed")),
                        (num_heads, head_dim, num_heads * head_dim), self.param_dtype)
    bias = self.param("bias", logical(nn.initializers.zeros, ("embed",)), (num_heads * head_dim,),
                      self.param_dtype)
    return jnp.einsum("blhk,hkd->bld", x, kernel.astype(self.dtype)) + bias.astype(self.dtype)


class MultiHeadAttention(nn.Module):
  """Attention of `inputs_q` over `inputs_kv`.

  inputs_q: [B, Q, D], inputs_kv: [B, K, D], mask: bool broadcastable to [B, H, Q, K].
  Returns [B, Q, D]. Softmax runs in float32 whatever the compute dtype.

  `key_value` and `attend` split the call in two so a decoder can project keys and values
  once and reuse them: the encoder's for every generated token, and its own past tokens'
  from a KV cache.
  """
  num_heads: int
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  def setup(self):
    project = lambda: HeadProjection(self.num_heads, self.dtype, self.param_dtype)  # noqa: E731
    self.query, self.key, self.value = project(), project(), project()
    self.out = HeadMerge(self.dtype, self.param_dtype)

  def key_value(self, inputs_kv: jax.Array) -> tuple[jax.Array, jax.Array]:
    """inputs_kv: [B, K, D] → (keys, values), each [B, K, H, D/H]."""
    return self.key(inputs_kv), self.value(inputs_kv)

  def attend(self, inputs_q: jax.Array, key: jax.Array, value: jax.Array,
             mask: jax.Array | None = None, heads_first: bool = False) -> jax.Array:
    """inputs_q: [B, Q, D] over projected key, value: [B, K, H, D/H] → [B, Q, D].

    `heads_first` takes key and value as [B, H, K, D/H], the layout of a KV cache: both
    attention products are then batched over (B, H) without transposing the cache, which
    would otherwise be copied at every decoding step. The attention weights f32[B, H, Q, K] are sown as
    intermediates["attention_weights"] (see mmjax.interpret).
    """
    query = self.query(inputs_q)
    _check_scores_fit(self.num_heads, query.shape[1], key.shape[2 if heads_first else 1], _where(self))
    query = query / jnp.sqrt(query.shape[-1]).astype(query.dtype)
    kv = "bhkd" if heads_first else "bkhd"
    logits = jnp.einsum(f"bqhd,{kv}->bhqk", query, key).astype(jnp.float32)
    if mask is not None:
      logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
    weights = jax.nn.softmax(logits, axis=-1)
    # Kept only when the caller applies the model with mutable=["intermediates"] (mmjax.interpret); otherwise
    # a no-op, so training and decoding compute exactly what they did without it.
    self.sow("intermediates", "attention_weights", weights)
    return self.out(jnp.einsum(f"bhqk,{kv}->bqhd", weights.astype(self.dtype), value))

  def __call__(self, inputs_q: jax.Array, inputs_kv: jax.Array,
               mask: jax.Array | None = None) -> jax.Array:
    return self.attend(inputs_q, *self.key_value(inputs_kv), mask)
