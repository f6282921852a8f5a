"""Patch, token and position embeddings."""
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax import errors
from mmjax.nn.partitioning import DEFAULT_KERNEL_INIT, logical


class PatchEmbed(nn.Module):
  """Non-overlapping patches → tokens. image: [B, H, W, C] → [B, (H/p)*(W/p), width]."""
  patch_size: int
  width: int
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, image: jax.Array) -> jax.Array:
    _, height, width, _ = image.shape
    if height % self.patch_size or width % self.patch_size:
      raise errors.ConfigError(f"Image size {height}x{width} is not divisible by patch size {self.patch_size}; "
                               "change the image size or the ViT variant's patch (e.g. 'S/8').")
    tokens = nn.Conv(self.width, (self.patch_size,) * 2, strides=(self.patch_size,) * 2,
                     padding="VALID", dtype=self.dtype, param_dtype=self.param_dtype, name="conv",
                     kernel_init=logical(DEFAULT_KERNEL_INIT, (None, None, None, "embed")),
                     bias_init=logical(nn.initializers.zeros, ("embed",)))(image)
    return tokens.reshape(tokens.shape[0], -1, self.width)


class TokenEmbed(nn.Module):
  """Token ids: int[B, L] → [B, L, width]."""
  vocab_size: int
  width: int
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, tokens: jax.Array) -> jax.Array:
    return nn.Embed(self.vocab_size, self.width, dtype=self.dtype, param_dtype=self.param_dtype,
                    embedding_init=logical(nn.initializers.normal(0.02), ("vocab", "embed")),
                    name="embedding")(tokens)


def sincos_2d(height: int, width: int, features: int, temperature: float = 10_000.0) -> jax.Array:
  """Fixed 2-D sine-cosine position table f32[height * width, features] (MoCo v3 / big_vision)."""
  if features % 4:
    raise errors.ConfigError(f"sincos2d position embeddings need a width divisible by 4; got {features}.")
  y, x = jnp.mgrid[:height, :width]
  omega = 1.0 / temperature ** (jnp.arange(features // 4) / (features // 4 - 1))
  y = y.reshape(-1)[:, None] * omega[None, :]
  x = x.reshape(-1)[:, None] * omega[None, :]
  return jnp.concatenate([jnp.sin(x), jnp.cos(x), jnp.sin(y), jnp.cos(y)], axis=1)


class PositionEmbed(nn.Module):
  """Adds a learned position embedding to x: [B, L, D] (L ≤ max_len): the table's first L rows. `embedding_init`
  gives the table's start (e.g. Whisper's sinusoids)."""
  max_len: int
  param_dtype: Any = jnp.float32
  embedding_init: Callable[..., jax.Array] = nn.initializers.normal(0.02)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    length, width = x.shape[-2:]
    if length > self.max_len:
      raise errors.InputError(f"Sequence of length {length} exceeds the position table ({self.max_len}); "
                              "raise the model's max_len or shorten the input.")
    table = self.param("pos_embedding", logical(self.embedding_init, (None, "embed")),
                       (self.max_len, width), self.param_dtype)
    return x + table[:length].astype(x.dtype)
