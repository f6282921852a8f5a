"""Encoder–decoder for text generation: captioning, generative VQA (the question is an input), speech to text."""
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax

from mmjax import errors
from mmjax.models.fusion import check_yields_tokens
from mmjax.models.lstm_decoder import LSTMDecoder
from mmjax.models.multimodal_encoder import MultimodalEncoder
from mmjax.models.text_decoder import DecodeState, TextDecoder

DECODERS: dict[str, type[nn.Module]] = {"transformer": TextDecoder, "lstm": LSTMDecoder}


class Captioner(MultimodalEncoder):
  """p(y | inputs) = Π_t p(y_t | y_<t, fused tokens of the inputs).

  The inputs' encoders and fusion are MultimodalEncoder's; the fusion must yield tokens (a token-level
  fusion: mmjax.models.fusion.TOKEN_LEVEL), which a decoder of the fusion's `width` attends to. `decoder` holds
  the decoder's `name` (one of DECODERS; "transformer" when absent) and its other fields (vocab_size, depth,
  num_heads, mlp_dim, max_len, ...).
  """
  decoder: Mapping[str, Any] | None = None

  def setup(self):
    check_yields_tokens(self.fusion)
    if not self.decoder:
      raise errors.ConfigError("A captioner needs config.model.decoder (vocab_size, depth, num_heads, mlp_dim, "
                               "max_len).")
    super().setup()
    fields = dict(self.decoder)
    decoder = errors.lookup(DECODERS, fields.pop("name", "transformer"), "decoder", "config.model.decoder.name")
    self.text_decoder = decoder(**fields, width=self.width, dtype=self.dtype, param_dtype=self.param_dtype,
                                remat=self.remat)

  def encode_tokens(self, inputs: Mapping[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
    """→ (fused tokens [B, N, width], valid bool[B, N]) that the decoder attends to."""
    fused = self.encode(inputs)
    return fused.tokens, fused.mask

  def __call__(self, inputs: Mapping[str, jax.Array], decoder_input: jax.Array) -> jax.Array:
    """Teacher forcing: decoder_input int[B, L] (bos, y_0, …, y_{L-2}) → logits f32[B, L, V] for y."""
    return self.decode(decoder_input, *self.encode_tokens(inputs))

  def decode(self, decoder_input: jax.Array, encoded: jax.Array, encoded_mask: jax.Array) -> jax.Array:
    """Teacher forcing over tokens already encoded (`encode_tokens`), so one encoding serves several targets."""
    return self.text_decoder(decoder_input, encoded, encoded_mask)

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
