"""Token pooling: a sequence [B, L, D] with a valid mask [B, L] → one vector [B, D]."""
import jax
import jax.numpy as jnp

from mmjax import errors


def _first(tokens: jax.Array, mask: jax.Array) -> jax.Array:
  del mask
  return tokens[:, 0]


def _mean(tokens: jax.Array, mask: jax.Array) -> jax.Array:
  weights = mask.astype(tokens.dtype)[..., None]
  return (tokens * weights).sum(1) / jnp.maximum(weights.sum(1), 1)


def _last(tokens: jax.Array, mask: jax.Array) -> jax.Array:
  """The last valid token: the end-of-text token when the tokenizer appends EOS (CLIP-style)."""
  last = jnp.maximum(mask.sum(1).astype(jnp.int32) - 1, 0)
  return jnp.take_along_axis(tokens, last[:, None, None], axis=1)[:, 0]


POOLINGS = {"cls": _first, "mean": _mean, "last": _last}


def pool_tokens(tokens: jax.Array, mask: jax.Array, kind: str) -> jax.Array:
  """tokens [B, L, D] with valid mask bool[B, L] → [B, D], by one of POOLINGS."""
  return errors.lookup(POOLINGS, kind, "pooling")(tokens, mask)
