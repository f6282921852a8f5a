"""CLIP/SigLIP two-tower model: image and text encoders projected into one normalised space."""
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mmjax import nn as mnn
from mmjax.models.encoders import build_encoder


def _normalize(x: jax.Array) -> jax.Array:
  x = x.astype(jnp.float32)
  return x / jnp.linalg.norm(x, axis=-1, keepdims=True).clip(1e-6)


class TwoTower(nn.Module):
  """Encodes images and texts into unit vectors of size `embed_dim`.

  `image` and `text` are the encoders' config blocks ({"name": "vit", ...}, {"name": "transformer", ...};
  see mmjax.models.encoders). `logit_scale_init` is log(1/temperature); `logit_bias_init` adds SigLIP's
  learnable bias (None: no bias, as in CLIP).
  """
  image: Mapping[str, Any]
  text: Mapping[str, Any]
  embed_dim: int
  logit_scale_init: float = float(np.log(1 / 0.07))
  logit_bias_init: float | None = None
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  remat: str = "none"  # A policy of mmjax.nn.REMAT_POLICIES, for every Transformer block.

  def setup(self):
    kwargs = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    self.image_encoder = build_encoder("image", self.image, **kwargs, remat=self.remat)
    self.text_encoder = build_encoder("text", self.text, **kwargs, remat=self.remat)
    self.image_proj = mnn.dense(self.embed_dim, ("embed", "joint"), **kwargs, use_bias=False)
    self.text_proj = mnn.dense(self.embed_dim, ("embed", "joint"), **kwargs, use_bias=False)
    self.logit_scale = self.param("logit_scale", nn.initializers.constant(self.logit_scale_init),
                                  (), jnp.float32)
    if self.logit_bias_init is not None:
      self.logit_bias = self.param("logit_bias", nn.initializers.constant(self.logit_bias_init),
                                   (), jnp.float32)

  def encode_image(self, image: jax.Array) -> tuple[jax.Array, dict]:
    """image: f32[B, H, W, 3] → (unit embeddings f32[B, embed_dim], aux)."""
    pooled, aux = self.image_encoder(image)
    return _normalize(self.image_proj(pooled)), aux

  def image_features(self, image: jax.Array) -> jax.Array:
    """image → the image tower's pooled features [B, width], before the projection (for linear probes)."""
    return self.image_encoder(image)[0].astype(jnp.float32)

  def encode_text(self, text: jax.Array) -> tuple[jax.Array, dict]:
    """text: int[B, L] → (unit embeddings f32[B, embed_dim], aux)."""
    pooled, aux = self.text_encoder(text)
    return _normalize(self.text_proj(pooled)), aux

  def __call__(self, image: jax.Array, text: jax.Array) -> tuple[tuple[jax.Array, jax.Array], dict]:
    image_emb, image_aux = self.encode_image(image)
    text_emb, text_aux = self.encode_text(text)
    aux = {"image": image_aux, "text": text_aux, "logit_scale": self.logit_scale}
    if self.logit_bias_init is not None:
      aux["logit_bias"] = self.logit_bias
    return (image_emb, text_emb), aux
