"""Transformer text encoder (CLIP-style causal with end-of-text pooling, or bidirectional)."""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax import errors
from mmjax import nn as mnn


def _up_to_first(tokens: jax.Array, eos_id: int) -> jax.Array:
  """bool[B, L]: True up to and including each row's first `eos_id` (everywhere if it has none)."""
  is_eos = tokens == eos_id
  return jnp.cumsum(is_eos, axis=1) - is_eos == 0


class TextTransformer(nn.Module):
  """tokens: int[B, L] (0 = padding) → (pooled [B, width], aux{'tokens', 'mask'}).

  `pool="last"` takes the last non-padding token, i.e. the end-of-text token the
  tokenizer appends; with `causal=True` that token is the only one that has seen the
  whole caption, as in CLIP.

  `eos_id` is for vocabularies where id 0 is a real token (CLIP's BPE: "!"): a token is then valid up to and
  including the first `eos_id`, and "last" pools at that eos, as Hugging Face's CLIP does. A sequence without
  eos is valid throughout. `activation` and `epsilon` (of every LayerNorm) are an imported checkpoint's.
  """
  vocab_size: int
  width: int = 128
  depth: int = 4
  num_heads: int = 4
  mlp_dim: int = 512
  max_len: int = 64
  causal: bool = True
  pool: str = "last"
  eos_id: int | None = None
  activation: str = "gelu"  # One of mmjax.nn.ACTIVATIONS.
  epsilon: float = 1e-6
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  remat: str = "none"

  @nn.compact
  def __call__(self, tokens: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    if tokens.ndim != 2 or not jnp.issubdtype(tokens.dtype, jnp.integer):
      raise errors.InputError(f"Text encoder expects int tokens [B, L]; got {tokens.dtype}{list(tokens.shape)}.")
    valid = tokens != 0 if self.eos_id is None else _up_to_first(tokens, self.eos_id)
    x = mnn.TokenEmbed(self.vocab_size, self.width, self.dtype, self.param_dtype, name="embed")(tokens)
    x = mnn.PositionEmbed(self.max_len, self.param_dtype, name="pos_embed")(x)
    x = nn.with_logical_constraint(x, ("batch", "length", "embed"))
    mask = mnn.attention_mask(valid, valid)
    if self.causal:
      mask = mask & mnn.causal_mask(tokens.shape[1])
    x = mnn.Encoder(self.depth, self.num_heads, self.mlp_dim, self.dtype, self.param_dtype, self.remat,
                    activation=self.activation, epsilon=self.epsilon, name="encoder")(x, mask)
    return mnn.pool_tokens(x, valid, self.pool), {"tokens": x, "mask": valid}
