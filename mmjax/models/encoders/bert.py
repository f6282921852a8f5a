"""BERT text encoder, shaped to import BERT-family checkpoints such as sentence-transformers' all-MiniLM-L6-v2."""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax import errors
from mmjax import nn as mnn

BERT_POOLINGS = ("mean", "cls")


class BertEncoder(nn.Module):
  """tokens: int[B, L] (0 = [PAD]) → (pooled [B, width], aux{'tokens', 'mask'}).

  Token + position + token-type embeddings, a LayerNorm, then a post-LayerNorm Transformer with exact (erf) GELU
  and no final norm: BERT's layout, so a checkpoint's weights mean what they meant in training. Every sequence is
  one segment (token type 0), as a sentence encoder sees it. `pool="mean"` averages every real token, [CLS] and
  [SEP] included, as sentence-transformers' mean pooling does; "cls" takes the first token. `normalize` scales
  the pooled vector to unit L2 norm, as all-MiniLM-L6-v2's Normalize module does, so dot products are cosines.
  """
  vocab_size: int = 30522
  width: int = 384
  depth: int = 6
  num_heads: int = 12
  mlp_dim: int = 1536
  max_len: int = 512
  type_vocab_size: int = 2
  epsilon: float = 1e-12
  pool: str = "mean"
  normalize: bool = True
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  remat: str = "none"

  @nn.compact
  def __call__(self, tokens: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    if tokens.ndim != 2 or not jnp.issubdtype(tokens.dtype, jnp.integer):
      raise errors.InputError(f"BERT encoder expects int tokens [B, L]; got {tokens.dtype}{list(tokens.shape)}.")
    errors.check_choice(self.pool, BERT_POOLINGS, "BERT pooling")
    valid = tokens != 0
    x = mnn.TokenEmbed(self.vocab_size, self.width, self.dtype, self.param_dtype, name="embed")(tokens)
    x = mnn.PositionEmbed(self.max_len, self.param_dtype, name="pos_embed")(x)
    # Not sharded over `vocab` like the token table: two rows split over no model axis.
    types = self.param("type_embedding", mnn.logical(nn.initializers.normal(0.02), (None, "embed")),
                       (self.type_vocab_size, self.width), self.param_dtype)
    x = x + types[0].astype(x.dtype)
    x = mnn.layer_norm("embed_norm", self.dtype, self.param_dtype, self.epsilon)(x)
    x = nn.with_logical_constraint(x, ("batch", "length", "embed"))
    x = mnn.Encoder(self.depth, self.num_heads, self.mlp_dim, self.dtype, self.param_dtype, self.remat, norm="post",
                    activation="gelu_erf", epsilon=self.epsilon, final_norm=False,
                    name="encoder")(x, mnn.attention_mask(valid, valid))
    pooled = mnn.pool_tokens(x, valid, self.pool)
    if self.normalize:
      pooled32 = pooled.astype(jnp.float32)
      norm = jnp.linalg.norm(pooled32, axis=-1, keepdims=True)
      pooled = (pooled32 / jnp.maximum(norm, 1e-12)).astype(pooled.dtype)
    return pooled, {"tokens": x, "mask": valid}
