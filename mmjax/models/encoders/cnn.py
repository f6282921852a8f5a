"""A small ResNet for 2-D inputs (images, spectrograms) that returns tokens like the Transformer encoders.

GroupNorm, not BatchNorm: the codebase is pure-functional (no mutable `batch_stats` collection), and
GroupNorm's per-example statistics make train and eval the same function.
"""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax import errors
from mmjax import nn as mnn
from mmjax.nn.partitioning import dense, logical
from mmjax.nn.transformer import rematerialized

# He init for convolutions followed by GELU; output channels carry the "embed" axis (as in PatchEmbed).
CONV_KERNEL_INIT = logical(nn.initializers.he_normal(), (None, None, None, "embed"))
FEATURE_MAP = ("batch", None, None, "embed")


def conv(features: int, kernel: int, stride: int, dtype: Any, param_dtype: Any, name: str) -> nn.Conv:
  """A bias-free SAME convolution (a norm follows each one) with logical axis names."""
  return nn.Conv(features, (kernel, kernel), strides=(stride, stride), padding="SAME", use_bias=False,
                 dtype=dtype, param_dtype=param_dtype, kernel_init=CONV_KERNEL_INIT, name=name)


def group_norm(groups: int, dtype: Any, param_dtype: Any, name: str, zero_scale: bool = False) -> nn.GroupNorm:
  """GroupNorm with logical axis names; `zero_scale` starts a residual branch at zero (Goyal et al. 2017),
  so every block begins as the identity and a deep net trains like a shallow one at first."""
  return nn.GroupNorm(num_groups=groups, dtype=dtype, param_dtype=param_dtype, name=name,
                      scale_init=logical(nn.initializers.zeros if zero_scale else nn.initializers.ones, ("embed",)),
                      bias_init=logical(nn.initializers.zeros, ("embed",)))


class ResidualBlock(nn.Module):
  """x: [B, H, W, C] → gelu(x' + GN(conv3(gelu(GN(conv3_s(x)))))): [B, ⌈H/s⌉, ⌈W/s⌉, features].

  The shortcut x' is x, or a strided 1×1 conv + GN where the shape changes (ResNet's option B).
  """
  features: int
  stride: int = 1
  groups: int = 8
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    y = conv(self.features, 3, self.stride, self.dtype, self.param_dtype, "conv1")(x)
    y = nn.gelu(group_norm(self.groups, self.dtype, self.param_dtype, "norm1")(y))
    y = conv(self.features, 3, 1, self.dtype, self.param_dtype, "conv2")(y)
    y = group_norm(self.groups, self.dtype, self.param_dtype, "norm2", zero_scale=True)(y)
    if self.stride != 1 or x.shape[-1] != self.features:
      x = conv(self.features, 1, self.stride, self.dtype, self.param_dtype, "shortcut")(x)
      x = group_norm(self.groups, self.dtype, self.param_dtype, "shortcut_norm")(x)
    return nn.with_logical_constraint(nn.gelu(x + y), FEATURE_MAP)


class ConvNet(nn.Module):
  """x: f32[B, H, W, C] → (pooled [B, width], aux{'tokens': [B, N, width], 'mask': bool[B, N]}).

  A stem (3×3 conv with `stem_stride` → GN → GELU), then one stage per entry of `widths`, each of
  `blocks_per_stage` ResidualBlocks, the first block of every stage after the first downsampling
  by 2 (28×28 with 3 stages → 7×7, N = 49; 64×64 → 16×16, N = 256); the defaults are CPU-sized.
  The final feature map's N = H'·W' positions, flattened row-major and projected to `width` (Dense +
  LayerNorm, the scale of the Transformer encoders' tokens), are the tokens; pooled is their mean.
  Every token is valid: the mask is all True, there for fusion modules that take (tokens, mask) from
  every modality.
  """
  widths: tuple[int, ...] = (16, 32, 64)
  blocks_per_stage: int = 1
  width: int = 64
  stem_stride: int = 1  # 2 quarters the cost of the first stage, which dominates on large inputs.
  norm_groups: int = 8
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  remat: str = "none"

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    if x.ndim != 4 or not jnp.issubdtype(x.dtype, jnp.floating):
      raise errors.InputError(f"ConvNet expects float inputs [B, H, W, C]; got {x.dtype}{list(x.shape)}.")
    if not self.widths or self.blocks_per_stage < 1 or any(w % self.norm_groups for w in self.widths):
      raise errors.ConfigError(f"ConvNet needs at least one stage, blocks_per_stage ≥ 1 and every width divisible "
                               f"by norm_groups={self.norm_groups}; got widths={self.widths}, "
                               f"blocks_per_stage={self.blocks_per_stage}.")
    block = rematerialized(ResidualBlock, self.remat)
    x = conv(self.widths[0], 3, self.stem_stride, self.dtype, self.param_dtype, "stem")(x.astype(self.dtype))
    x = nn.gelu(group_norm(self.norm_groups, self.dtype, self.param_dtype, "stem_norm")(x))
    x = nn.with_logical_constraint(x, FEATURE_MAP)
    for stage, features in enumerate(self.widths):
      for index in range(self.blocks_per_stage):
        stride = 2 if stage > 0 and index == 0 else 1
        x = block(features, stride, self.norm_groups, self.dtype, self.param_dtype,
                  name=f"stage{stage}_block{index}")(x)
    tokens = x.reshape(x.shape[0], -1, x.shape[-1])
    tokens = dense(self.width, (None, "embed"), self.dtype, self.param_dtype, "head")(tokens)
    tokens = mnn.layer_norm("ln_final", self.dtype, self.param_dtype)(tokens)
    tokens = nn.with_logical_constraint(tokens, ("batch", "length", "embed"))
    mask = jnp.ones(tokens.shape[:2], bool)
    return mnn.pool_tokens(tokens, mask, "mean"), {"tokens": tokens, "mask": mask}
