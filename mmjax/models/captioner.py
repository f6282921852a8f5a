"""Encoder–decoder for text generation: captioning, and generative VQA (the question is a prompt)."""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax.models.fused_encoder import FusedEncoder
from mmjax.models.text_decoder import DecodeState, TextDecoder


class Captioner(nn.Module):
  """p(y | x_image, x_text) = Π_t p(y_t | y_<t, FusedEncoder(x_image, x_text)).

  `image`, `text` and `decoder` are the keyword arguments of ViT, TextTransformer (None:
  no text input, as in captioning) and TextDecoder; the encoders' tokens are projected to
  the decoder's width and, with `fusion_depth` > 0, fused by a Transformer of the decoder's
  heads and MLP size (see FusedEncoder).
  """
  image: dict
  decoder: dict
  text: dict | None = None
  fusion_depth: int = 0
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  remat: str = "none"  # A policy of mmjax.nn.transformer.REMAT_POLICIES, for every Transformer block.

  def setup(self):
    kwargs = dict(dtype=self.dtype, param_dtype=self.param_dtype, remat=self.remat)
    self.text_decoder = TextDecoder(**self.decoder, **kwargs)
    decoder = self.text_decoder
    self.encoder = FusedEncoder(self.image, self.text, width=decoder.width, fusion_depth=self.fusion_depth,
                                num_heads=decoder.num_heads, mlp_dim=decoder.mlp_dim, **kwargs)

  def encode(self, image: jax.Array, text: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """→ (tokens [B, N, width], valid bool[B, N]) that the decoder attends to."""
    return self.encoder(image, text)

  def __call__(self, image: jax.Array, decoder_input: jax.Array, text: jax.Array | None = None) -> jax.Array:
    """Teacher forcing: decoder_input int[B, L] (bos, y_0, …, y_{L-2}) → logits f32[B, L, V] for y."""
    return self.text_decoder(decoder_input, *self.encode(image, text))

  def init_decode_state(self, encoded: jax.Array, encoded_mask: jax.Array, length: int,
                        kv_cache: bool = True) -> DecodeState:
    if kv_cache:
      return self.text_decoder.init_cache(encoded, encoded_mask, length)
    return self.text_decoder.init_buffer(encoded, encoded_mask, length)

  def decode_step(self, tokens: jax.Array, index: jax.Array, state: DecodeState,
                  kv_cache: bool = True) -> tuple[jax.Array, DecodeState]:
    """tokens int[B] at position `index` → (logits f32[B, V], state); see mmjax.decoding."""
    if kv_cache:
      return self.text_decoder.step(tokens, index, state)
    return self.text_decoder.step_uncached(tokens, index, state)
