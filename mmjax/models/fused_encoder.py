"""Image (and optional text) encoders whose tokens are projected to one width and concatenated."""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax import errors
from mmjax import nn as mnn
from mmjax.models.image_encoder import ViT
from mmjax.models.text_encoder import TextTransformer
from mmjax.nn.partitioning import DEFAULT_KERNEL_INIT, logical


class FusedEncoder(nn.Module):
  """image f32[B, H, W, 3] (+ text int[B, L]) → (tokens [B, N, width], valid bool[B, N]).

  The projected token sequences are concatenated (image tokens first, then the text's, with
  padding masked) and, with `fusion_depth` > 0, passed through a Transformer in which every
  token attends to both modalities, as in the fusion encoders of ALBEF/BLIP: a question such
  as "is the red circle left of the blue square?" needs image tokens that know which object
  the question is about. The result is what a decoder cross-attends to or a classifier pools.
  The towers keep TwoTower's names (`image_encoder`, `text_encoder`), so a contrastive
  checkpoint can initialise them (see mmjax.finetune).
  """
  image: dict
  text: dict | None = None
  width: int = 128
  fusion_depth: int = 0
  num_heads: int = 4
  mlp_dim: int = 512
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  remat: str = "none"  # A policy of mmjax.nn.transformer.REMAT_POLICIES, for every Transformer block.

  def setup(self):
    kwargs = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    proj = dict(features=self.width, **kwargs, kernel_init=logical(DEFAULT_KERNEL_INIT, (None, "embed")),
                bias_init=logical(nn.initializers.zeros, ("embed",)))
    self.image_encoder = ViT(**self.image, **kwargs, remat=self.remat)
    self.image_proj = nn.Dense(**proj)
    if self.text is not None:
      self.text_encoder = TextTransformer(**self.text, **kwargs, remat=self.remat)
      self.text_proj = nn.Dense(**proj)
    if self.fusion_depth:
      self.fusion = mnn.Encoder(self.fusion_depth, self.num_heads, self.mlp_dim, **kwargs, remat=self.remat)

  def __call__(self, image: jax.Array, text: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    if (text is None) != (self.text is None):
      raise errors.InputError("This model was configured " + ("with" if self.text is not None else "without")
                              + " a text encoder (config.model.text) but called "
                              + ("without" if text is None else "with") + " text input.")
    _, image_aux = self.image_encoder(image)
    tokens = [self.image_proj(image_aux["tokens"])]
    valid = [jnp.ones(tokens[0].shape[:2], bool)]
    if text is not None:
      _, text_aux = self.text_encoder(text)
      tokens.append(self.text_proj(text_aux["tokens"]))
      valid.append(text_aux["mask"])
    tokens = nn.with_logical_constraint(jnp.concatenate(tokens, axis=1), ("batch", "length", "embed"))
    valid = jnp.concatenate(valid, axis=1)
    if self.fusion_depth:
      tokens = self.fusion(tokens, mnn.attention_mask(valid, valid))
    return tokens, valid
