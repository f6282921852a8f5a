"""The classic text encoders the Transformer replaced, as baselines with its interface: an LSTM (Hochreiter &
Schmidhuber 1997; bidirectional as in ELMo), a 1-D CNN over word embeddings (Kim 2014), and a bag of words (the
mean of the word embeddings: the embedding bag of fastText-style baselines).

Each maps tokens int[B, L] (0 = padding) → (pooled [B, width], aux{'tokens': [B, L, width], 'mask': bool[B, L]}),
so every fusion and task takes them as it takes the Transformer (the text encoder block's `name`: `lstm`,
`cnn`, `bow`).
"""
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax import errors
from mmjax import nn as mnn
from mmjax.nn.partitioning import logical

# Input-to-hidden kernels take the embedding axis (ZeRO-sharded over `fsdp`); the recurrence stays whole.
LSTM_INPUT_KERNEL = logical(nn.initializers.lecun_normal(), ("embed", None))
LSTM_RECURRENT_KERNEL = logical(nn.initializers.orthogonal(), (None, None))
_CONV_KERNEL = logical(nn.initializers.lecun_normal(), (None, "embed", None))


def _check_tokens(tokens: jax.Array, name: str) -> jax.Array:
  """The valid mask of int tokens [B, L]."""
  if tokens.ndim != 2 or not jnp.issubdtype(tokens.dtype, jnp.integer):
    raise errors.InputError(f"The {name} text encoder expects int tokens [B, L]; got {tokens.dtype}"
                            f"{list(tokens.shape)}.")
  return tokens != 0


def _masked_max(x: jax.Array, mask: jax.Array) -> jax.Array:
  """Max over the valid positions of [B, L, D] (zeros for a row with none)."""
  pooled = jnp.where(mask[..., None], x, jnp.finfo(x.dtype).min).max(axis=1)
  return jnp.where(mask.any(axis=1, keepdims=True), pooled, 0)


class LstmTextEncoder(nn.Module):
  """Word embeddings → `depth` stacked LSTM layers of `width` units (with `bidirectional`, width / 2 per
  direction, concatenated). Padding is skipped: each sequence runs over its own length (nn.RNN's seq_lengths).

  pool: "last" (the state after the last valid token; bidirectional: forward last ⊕ backward first, the two
  states that have read the whole text), "mean" or "max" over the valid positions.
  """
  vocab_size: int
  width: int = 128
  depth: int = 1
  bidirectional: bool = False
  pool: str = "last"
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  remat: str = "none"

  def _cell(self, features: int, name: str) -> nn.OptimizedLSTMCell:
    return nn.OptimizedLSTMCell(features, kernel_init=LSTM_INPUT_KERNEL, recurrent_kernel_init=LSTM_RECURRENT_KERNEL,
                                dtype=self.dtype, param_dtype=self.param_dtype, name=name)

  @nn.compact
  def __call__(self, tokens: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    valid = _check_tokens(tokens, "LSTM")
    errors.check_choice(self.pool, ("last", "mean", "max"), "LSTM pooling", "config.model.encoders.text.pool")
    if self.bidirectional and self.width % 2:
      raise errors.ConfigError(f"A bidirectional LSTM splits width={self.width} over two directions; make it even.")
    lengths = valid.sum(axis=1).astype(jnp.int32)
    x = mnn.TokenEmbed(self.vocab_size, self.width, self.dtype, self.param_dtype, name="embed")(tokens)
    for layer in range(self.depth):
      if self.bidirectional:
        half = self.width // 2
        x = nn.Bidirectional(nn.RNN(self._cell(half, f"forward_{layer}")),
                             nn.RNN(self._cell(half, f"backward_{layer}")), name=f"lstm_{layer}")(
                                 x, seq_lengths=lengths)
      else:
        x = nn.RNN(self._cell(self.width, f"cell_{layer}"), name=f"lstm_{layer}")(x, seq_lengths=lengths)
    x = jnp.where(valid[..., None], x, 0)  # Past a sequence's end nn.RNN repeats its state: not tokens.
    if self.pool == "max":
      pooled = _masked_max(x, valid)
    elif self.pool == "last" and self.bidirectional:
      half = self.width // 2
      pooled = jnp.concatenate([mnn.pool_tokens(x[..., :half], valid, "last"), x[:, 0, half:]], axis=-1)
    else:
      pooled = mnn.pool_tokens(x, valid, self.pool)
    return pooled, {"tokens": x, "mask": valid}


class CnnTextEncoder(nn.Module):
  """Word embeddings → parallel 1-D convolutions of each of `kernel_sizes` (SAME padding, ReLU), their feature
  maps concatenated to `width` channels; pooled by max over time (Kim 2014) or "mean"."""
  vocab_size: int
  width: int = 128
  kernel_sizes: Sequence[int] = (3, 4, 5)
  pool: str = "max"
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  remat: str = "none"

  @nn.compact
  def __call__(self, tokens: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    valid = _check_tokens(tokens, "CNN")
    errors.check_choice(self.pool, ("max", "mean"), "text CNN pooling", "config.model.encoders.text.pool")
    if self.width % len(self.kernel_sizes):
      raise errors.ConfigError(f"The text CNN splits width={self.width} over {len(self.kernel_sizes)} kernel sizes "
                               f"{list(self.kernel_sizes)}; make it a multiple.")
    x = mnn.TokenEmbed(self.vocab_size, self.width, self.dtype, self.param_dtype, name="embed")(tokens)
    x = jnp.where(valid[..., None], x, 0)  # Padding contributes nothing to a window.
    maps = [nn.relu(nn.Conv(self.width // len(self.kernel_sizes), (size,), padding="SAME", dtype=self.dtype,
                            param_dtype=self.param_dtype, kernel_init=_CONV_KERNEL, name=f"conv_{size}")(x))
            for size in self.kernel_sizes]
    x = jnp.where(valid[..., None], jnp.concatenate(maps, axis=-1), 0)
    pooled = _masked_max(x, valid) if self.pool == "max" else mnn.pool_tokens(x, valid, "mean")
    return pooled, {"tokens": x, "mask": valid}


class BagOfWordsEncoder(nn.Module):
  """The mean of the valid tokens' embeddings (order ignored); the tokens are the embeddings themselves."""
  vocab_size: int
  width: int = 128
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  remat: str = "none"

  @nn.compact
  def __call__(self, tokens: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    valid = _check_tokens(tokens, "bag-of-words")
    x = mnn.TokenEmbed(self.vocab_size, self.width, self.dtype, self.param_dtype, name="embed")(tokens)
    x = jnp.where(valid[..., None], x, 0)
    return mnn.pool_tokens(x, valid, "mean"), {"tokens": x, "mask": valid}
