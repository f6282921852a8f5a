"""Classifier over fused image (+ text) tokens, e.g. VQA over a fixed answer set."""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax import nn as mnn
from mmjax.models.fused_encoder import FusedEncoder
from mmjax.nn.partitioning import DEFAULT_KERNEL_INIT, logical


class FusionClassifier(nn.Module):
  """(image, text) → (logits f32[B, num_classes], aux{}): FusedEncoder's tokens (fused by a
  `fusion_depth`-layer Transformer), mean-pooled, then an MLP head."""
  image: dict
  num_classes: int
  text: dict | None = None
  width: int = 128
  fusion_depth: int = 1
  num_heads: int = 4
  mlp_dim: int = 512
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  remat: str = "none"  # A policy of mmjax.nn.transformer.REMAT_POLICIES, for every Transformer block.

  @property
  def modalities(self) -> tuple[str, ...]:
    return ("image",) + (("text",) if self.text is not None else ())

  @nn.compact
  def __call__(self, image: jax.Array, text: jax.Array | None = None) -> tuple[jax.Array, dict]:
    kwargs = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    tokens, valid = FusedEncoder(self.image, self.text, self.width, self.fusion_depth, self.num_heads,
                                 self.mlp_dim, **kwargs, remat=self.remat, name="encoder")(image, text)
    pooled = mnn.pool_tokens(tokens, valid, "mean")
    hidden = nn.gelu(nn.Dense(self.mlp_dim, **kwargs, name="head_hidden",
                              kernel_init=logical(DEFAULT_KERNEL_INIT, ("embed", "mlp")),
                              bias_init=logical(nn.initializers.zeros, ("mlp",)))(pooled))
    logits = nn.Dense(self.num_classes, **kwargs, name="head",
                      kernel_init=logical(DEFAULT_KERNEL_INIT, ("mlp", None)),
                      bias_init=logical(nn.initializers.zeros, (None,)))(hidden)
    return logits.astype(jnp.float32), {"unimodal_logits": {}}
