"""An LSTM text decoder with attention over the encoded tokens (Show, Attend and Tell: Xu et al. 2015), the
recurrent baseline of the Transformer decoder, behind the same decoding interface (mmjax.decoding's StepFn)."""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax import errors
from mmjax import nn as mnn
from mmjax.models.encoders.classic_text import LSTM_INPUT_KERNEL, LSTM_RECURRENT_KERNEL
from mmjax.models.text_decoder import AutoregressiveDecoder, DecodeState

ATTENTIONS = ("additive", "dot")
Carry = list[tuple[jax.Array, jax.Array]]  # (memory c, hidden h) per layer, each [B, width].


class LstmStack(nn.Module):
  """`depth` LSTM cells of `width` units, one position: (carry, x [B, D]) → (carry, top hidden state [B, width]).
  One module for both paths, so teacher forcing (scanned over the length) and the cached step share weights."""
  width: int
  depth: int
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  def setup(self):
    self.cells = [nn.OptimizedLSTMCell(self.width, kernel_init=LSTM_INPUT_KERNEL,
                                       recurrent_kernel_init=LSTM_RECURRENT_KERNEL,
                                       dtype=self.dtype, param_dtype=self.param_dtype) for _ in range(self.depth)]

  def __call__(self, carry: Carry, x: jax.Array) -> tuple[Carry, jax.Array]:
    new_carry = []
    for cell, layer_carry in zip(self.cells, carry):
      layer_carry, x = cell(layer_carry, x)
      new_carry.append(layer_carry)
    return new_carry, x


class LSTMDecoder(AutoregressiveDecoder):
  """Token embedding → `depth` stacked LSTMs (initial state: a Dense per layer of the masked mean of the encoded
  tokens, as Show-Attend-Tell) → attention of the top hidden state over the encoded tokens → tanh(Dense(hidden ⊕
  context)) → logits (through the embedding when `tie_embedding`).

  The attention reads the hidden state after the LSTM (Luong et al. 2015's order) rather than before it (Xu et al.
  feed the context into the LSTM): the recurrence then needs only the tokens, so teacher forcing scans the LSTM
  alone and attends at every position in one batched pass. `attention`: "additive" (Bahdanau: vᵀ tanh(W k + U h),
  its hidden layer `mlp_dim` wide) or "dot" (scaled hᵀ W k). The decoding state holds the carries, the encoder's
  projected keys, its tokens and mask (every leaf leads with the batch), so mmjax.decoding's methods run unchanged;
  `init_buffer` / `step_uncached` (no cache) are the shared teacher-forced reference. `remat` rematerialises each
  position's LSTM stack (mmjax.nn.REMAT_POLICIES).
  """
  vocab_size: int
  width: int
  depth: int = 1
  mlp_dim: int = 128
  attention: str = "additive"
  max_len: int = 32
  tie_embedding: bool = True
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  remat: str = "none"

  def setup(self):
    errors.check_choice(self.attention, ATTENTIONS, "LSTM decoder attention", "config.model.decoder.attention")
    dense = lambda features, axes, **kwargs: mnn.dense(features, axes, self.dtype, self.param_dtype, **kwargs)
    self.embed = nn.Embed(self.vocab_size, self.width, dtype=self.dtype, param_dtype=self.param_dtype,
                          embedding_init=mnn.logical(nn.initializers.normal(0.02), ("vocab", "embed")))
    self.init_state = [dense(2 * self.width, ("embed", None)) for _ in range(self.depth)]
    self.lstm = mnn.rematerialized(LstmStack, self.remat)(self.width, self.depth, self.dtype, self.param_dtype)
    if self.attention == "additive":
      self.key = dense(self.mlp_dim, ("embed", "mlp"))
      self.query = dense(self.mlp_dim, ("embed", "mlp"), use_bias=False)
      self.score = dense(1, ("mlp", None), use_bias=False)
    else:
      self.key = dense(self.width, ("embed", None), use_bias=False)
    self.combine = dense(self.width, (None, "embed"))
    if not self.tie_embedding:
      self.head = dense(self.vocab_size, ("embed", "vocab"))

  def _encoder_state(self, encoded: jax.Array, encoded_mask: jax.Array) -> DecodeState:
    """What every position reads from the encoder, and the LSTM's initial carry from the masked mean of its tokens
    (zeros for a row with no valid token)."""
    self._check_width(encoded)
    mean = mnn.pool_tokens(encoded, encoded_mask, "mean")
    carry = [tuple(jnp.split(jnp.tanh(dense(mean)), 2, axis=-1)) for dense in self.init_state]
    return {"carry": carry, "keys": self.key(encoded), "encoded": encoded, "encoded_mask": encoded_mask}

  def _logits(self, hidden: jax.Array, state: DecodeState) -> jax.Array:
    """hidden: the top LSTM states [B, L, width] → logits f32[B, L, V]."""
    keys, encoded, mask = state["keys"], state["encoded"], state["encoded_mask"][:, None, :]
    if self.attention == "additive":
      scores = self.score(jnp.tanh(keys[:, None] + self.query(hidden)[:, :, None]))[..., 0]
    else:
      scores = jnp.einsum("bld,bnd->bln", hidden, keys) * self.width ** -0.5
    scores = jnp.where(mask, scores.astype(jnp.float32), jnp.finfo(jnp.float32).min)
    # Zeroing the masked weights leaves a row with no valid encoded token a zero context (not NaN, not a mean of
    # padding).
    weights = jax.nn.softmax(scores, axis=-1) * mask
    # As mmjax.nn.MultiHeadAttention does (one head, f32[B, 1, L, N]): kept only under mutable=["intermediates"].
    self.sow("intermediates", "attention_weights", weights[:, None])
    context = jnp.einsum("bln,bnd->bld", weights.astype(self.dtype), encoded.astype(self.dtype))
    x = jnp.tanh(self.combine(jnp.concatenate([hidden, context], axis=-1)))
    x = nn.with_logical_constraint(x, ("batch", "length", "embed"))
    logits = self.embed.attend(x) if self.tie_embedding else self.head(x)
    return logits.astype(jnp.float32)

  def __call__(self, tokens: jax.Array, encoded: jax.Array, encoded_mask: jax.Array) -> jax.Array:
    """tokens: int[B, L] (bos first), encoded: [B, N, width], encoded_mask: bool[B, N] → f32[B, L, V]."""
    self._check_length(tokens.shape[1])
    state = self._encoder_state(encoded, encoded_mask)
    x = nn.with_logical_constraint(self.embed(tokens), ("batch", "length", "embed"))
    scan = nn.scan(lambda lstm, carry, x: lstm(carry, x), variable_broadcast="params", split_rngs={"params": False},
                   in_axes=1, out_axes=1)
    _, hidden = scan(self.lstm, state["carry"], x)
    return self._logits(nn.with_logical_constraint(hidden, ("batch", "length", "embed")), state)

  def init_cache(self, encoded: jax.Array, encoded_mask: jax.Array, length: int) -> DecodeState:
    """The state for decoding `length` tokens one per `step`: its size does not grow with the length."""
    self._check_length(length)
    return self._encoder_state(encoded, encoded_mask)

  def step(self, tokens: jax.Array, index: jax.Array, state: DecodeState) -> tuple[jax.Array, DecodeState]:
    """tokens: int[B] at position `index` → (logits f32[B, V] for position index, new state)."""
    del index  # The position is in the carry.
    carry, hidden = self.lstm(state["carry"], self.embed(tokens))
    return self._logits(hidden[:, None], state)[:, 0], {**state, "carry": carry}
