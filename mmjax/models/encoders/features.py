"""The stand-in for a locked tower whose features were computed once beforehand (mmjax.data.features)."""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax import errors


class PrecomputedFeatures(nn.Module):
  """features: f32[B, D] → (pooled = features, aux{'tokens': [B, 1, D], 'mask': all True}); no parameters.

  A two-tower model with this image encoder trains exactly what LiT trains with its image tower locked (the
  projection, the temperature, the text tower) at the cost of a lookup per image.
  """
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  remat: str = "none"

  @nn.compact
  def __call__(self, features: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    if features.ndim != 2 or not jnp.issubdtype(features.dtype, jnp.floating):
      raise errors.InputError(f"The precomputed-features encoder expects f32[B, D] features; got {features.dtype}"
                              f"{list(features.shape)}. Set config.data.image_features, or use an image encoder.")
    features = features.astype(self.dtype)
    return features, {"tokens": features[:, None], "mask": jnp.ones(features.shape[:1] + (1,), bool)}
