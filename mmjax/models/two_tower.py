"""CLIP/SigLIP two-tower model: image and text encoders projected into one normalised space, with an optional
image–text matching (ITM) head over the towers' fused tokens (ALBEF/BLIP)."""
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mmjax import errors
from mmjax import nn as mnn
from mmjax.models.encoders import build_encoder
from mmjax.models.fusion import build_fusion

ITM_KEYS = ("fusion", "width", "depth", "num_heads", "mlp_dim", "fusion_options")


def _normalize(x: jax.Array) -> jax.Array:
  x = x.astype(jnp.float32)
  return x / jnp.linalg.norm(x, axis=-1, keepdims=True).clip(1e-6)


class TwoTower(nn.Module):
  """Encodes images and texts into unit vectors of size `embed_dim`.

  `image` and `text` are the encoders' config blocks ({"name": "vit", ...}, {"name": "transformer", ...};
  see mmjax.models.encoders). `logit_scale_init` is log(1/temperature); `logit_bias_init` adds SigLIP's
  learnable bias (None: no bias, as in CLIP).

  `itm` (None: no ITM part, and the params are exactly a plain two-tower's) is the image–text matching block
  {fusion, width, depth, num_heads, mlp_dim, fusion_options}: each tower's tokens are projected to `width`, the
  {"image", "text"} token dict goes through that fusion of the zoo (mmjax.models.fusion), and a Dense reads its
  pooled vector as one matched/not-matched logit (`match_logits`). The towers are shared with the contrastive
  part, as in ALBEF, so matching trains them too.
  """
  image: Mapping[str, Any]
  text: Mapping[str, Any]
  embed_dim: int
  logit_scale_init: float = float(np.log(1 / 0.07))
  logit_bias_init: float | None = None
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  remat: str = "none"  # A policy of mmjax.nn.REMAT_POLICIES, for every Transformer block.
  itm: Mapping[str, Any] | None = None

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
    if self.itm is not None:
      self._setup_itm(kwargs)

  def _setup_itm(self, kwargs: dict[str, Any]) -> None:
    if set(self.itm) != set(ITM_KEYS):
      raise errors.ConfigError(f"config.model.itm has keys {sorted(self.itm)}; it needs exactly {sorted(ITM_KEYS)}.")
    width = self.itm["width"]
    self.itm_image_proj = mnn.dense(width, (None, "embed"), **kwargs)
    self.itm_text_proj = mnn.dense(width, (None, "embed"), **kwargs)
    self.itm_fusion = build_fusion(self.itm["fusion"], width=width, depth=self.itm["depth"],
                                   num_heads=self.itm["num_heads"], mlp_dim=self.itm["mlp_dim"],
                                   **(self.itm["fusion_options"] or {}), **kwargs, remat=self.remat)
    self.itm_head = mnn.dense(1, ("embed", None), **kwargs)

  def match_logits(self, image_tokens: jax.Array, image_mask: jax.Array, text_tokens: jax.Array,
                   text_mask: jax.Array) -> jax.Array:
    """The towers' tokens of B (image, text) pairs → f32[B] logits that the pair matches.

    image_tokens: [B, N, width] and image_mask: bool[B, N] (aux["tokens"], aux["mask"] of `encode_image`);
    text_tokens: [B, L, width'] and text_mask: bool[B, L] (of `encode_text`). Taking tokens rather than inputs
    lets a task pair one image with several texts without running the towers again.
    """
    if self.itm is None:
      raise errors.ConfigError("This two-tower model has no ITM part: set config.model.itm to score pairs.")
    fused = self.itm_fusion({"image": self.itm_image_proj(image_tokens), "text": self.itm_text_proj(text_tokens)},
                            {"image": image_mask, "text": text_mask})
    return self.itm_head(fused.pooled)[:, 0].astype(jnp.float32)

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
    if self.itm is not None and self.is_initializing():  # Creates the ITM params with the rest.
      self.match_logits(image_aux["tokens"], image_aux["mask"], text_aux["tokens"], text_aux["mask"])
    aux = {"image": image_aux, "text": text_aux, "logit_scale": self.logit_scale}
    if self.logit_bias_init is not None:
      aux["logit_bias"] = self.logit_bias
    return (image_emb, text_emb), aux
