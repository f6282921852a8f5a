"""Autoregressive text decoder: causal self-attention, cross-attention to encoded features, KV cache."""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from mmjax import errors
from mmjax import nn as mnn

# The decoding state: a dict whose leaves all lead with the batch dimension, so beam search can
# tile and re-gather it by row (see mmjax.decoding).
DecodeState = dict[str, Any]


class AutoregressiveDecoder(nn.Module):
  """What every text decoder shares (fields `width` and `max_len` come from the subclass): the input checks,
  and decoding without a cache, by a teacher-forced pass over a token buffer per step (`__call__` of the
  subclass) — the reference every decoder's cached `step` is tested against."""

  def _check_length(self, length: int) -> None:
    if length > self.max_len:
      raise errors.InputError(f"Decoding {length} positions exceeds the decoder's max_len={self.max_len}; "
                              "raise config.model.decoder.max_len or lower config.decode.max_len.")

  def _check_width(self, encoded: jax.Array) -> None:
    if encoded.shape[-1] != self.width:
      raise errors.InputError(f"Encoded features of width {encoded.shape[-1]} do not match the decoder width "
                              f"{self.width}; project them first.")

  def init_buffer(self, encoded: jax.Array, encoded_mask: jax.Array, length: int) -> DecodeState:
    """The state for decoding without a cache: the encoder output and a token buffer int[B, length]."""
    self._check_length(length)
    return {"encoded": encoded, "encoded_mask": encoded_mask,
            "tokens": jnp.zeros((encoded.shape[0], length), jnp.int32)}

  def step_uncached(self, tokens: jax.Array, index: jax.Array,
                    state: DecodeState) -> tuple[jax.Array, DecodeState]:
    """`step` by recomputing every position of the buffer (causally), as a model without a
    cache must: O(length) times the work per token."""
    buffer = lax.dynamic_update_slice_in_dim(state["tokens"], tokens[:, None].astype(jnp.int32), index, axis=1)
    logits = self(buffer, state["encoded"], state["encoded_mask"])
    return lax.dynamic_index_in_dim(logits, index, axis=1, keepdims=False), {**state, "tokens": buffer}


class TextDecoder(AutoregressiveDecoder):
  """Pre-LN Transformer decoder over token ids, conditioned on encoded features.

  Three entry points share one set of weights:
    `__call__`: teacher forcing, tokens int[B, L] → logits f32[B, L, V] (training, scoring);
    `init_cache` + `step`: one token per call with a KV cache of static shape [B, H, T, Dh]
    per layer, so a jit-compiled decoding loop costs the same per token at any position;
    `init_buffer` + `step_uncached`: the same step by a full causal pass over a token buffer,
    the reference the cache is tested (and benchmarked) against.
  `tie_embedding` reuses the input embedding as the output projection.
  """
  vocab_size: int
  width: int
  depth: int = 2
  num_heads: int = 4
  mlp_dim: int = 512
  max_len: int = 32
  tie_embedding: bool = True
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  remat: str = "none"

  def setup(self):
    # The width and num_heads are checked by the attention of each block (mmjax/nn/attention.py).
    self.embed = nn.Embed(self.vocab_size, self.width, dtype=self.dtype, param_dtype=self.param_dtype,
                          embedding_init=mnn.logical(nn.initializers.normal(0.02), ("vocab", "embed")))
    self.pos_embedding = self.param("pos_embedding", mnn.logical(nn.initializers.normal(0.02), (None, "embed")),
                                    (self.max_len, self.width), self.param_dtype)
    block = mnn.rematerialized(mnn.DecoderBlock, self.remat)
    self.blocks = [block(self.num_heads, self.mlp_dim, self.dtype, self.param_dtype)
                   for _ in range(self.depth)]
    self.ln_final = mnn.layer_norm(None, self.dtype, self.param_dtype)
    if not self.tie_embedding:
      self.head = mnn.dense(self.vocab_size, ("embed", "vocab"), self.dtype, self.param_dtype)

  def _logits(self, x: jax.Array) -> jax.Array:
    x = self.ln_final(x)
    logits = self.embed.attend(x) if self.tie_embedding else self.head(x)
    return logits.astype(jnp.float32)

  def _cross(self, encoded: jax.Array, encoded_mask: jax.Array, heads_first: bool = False) -> dict[str, Any]:
    return {"cross_kv": [block.cross_key_value(encoded, heads_first) for block in self.blocks],
            "cross_mask": encoded_mask}

  def _run_blocks(self, x: jax.Array, cross: dict[str, Any], self_kv=None, index=None):
    cross_mask = cross["cross_mask"][:, None, None, :]
    new_kv = []
    for i, block in enumerate(self.blocks):
      x, kv = block(x, cross["cross_kv"][i], cross_mask, None if self_kv is None else self_kv[i], index)
      new_kv.append(kv)
    return x, new_kv

  def __call__(self, tokens: jax.Array, encoded: jax.Array, encoded_mask: jax.Array) -> jax.Array:
    """tokens: int[B, L] (bos first), encoded: [B, N, D], encoded_mask: bool[B, N] → f32[B, L, V]."""
    self._check_width(encoded)
    self._check_length(tokens.shape[1])
    x = self.embed(tokens) + self.pos_embedding[:tokens.shape[1]].astype(self.dtype)
    x, _ = self._run_blocks(nn.with_logical_constraint(x, ("batch", "length", "embed")),
                            self._cross(encoded, encoded_mask))
    return self._logits(x)

  def init_cache(self, encoded: jax.Array, encoded_mask: jax.Array, length: int) -> DecodeState:
    """The state for decoding `length` tokens with a KV cache: the encoder's keys/values per
    layer, and zeroed self-attention caches, all heads-first ([B, H, length, Dh])."""
    self._check_length(length)
    empty = jnp.zeros((encoded.shape[0], self.num_heads, length, self.width // self.num_heads), self.dtype)
    return {**self._cross(encoded, encoded_mask, heads_first=True), "self_kv": [(empty, empty)] * self.depth}

  def step(self, tokens: jax.Array, index: jax.Array, state: DecodeState) -> tuple[jax.Array, DecodeState]:
    """tokens: int[B] at position `index` → (logits f32[B, V] for position index, new state)."""
    x = self.embed(tokens[:, None]) + lax.dynamic_slice_in_dim(self.pos_embedding, index, 1)[None].astype(self.dtype)
    x, self_kv = self._run_blocks(x, state, state["self_kv"], index)
    return self._logits(x)[:, 0], {**state, "self_kv": self_kv}
