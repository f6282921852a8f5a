"""Models, built from `config.model` by name through the explicit `MODELS` registry."""
import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from mmjax import errors
from mmjax.models.image_encoder import ViT, decode_variant
from mmjax.models.text_encoder import TextTransformer
from mmjax.models.two_tower import TwoTower

MODELS = {"two_tower": TwoTower}

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def build(model_config: ml_collections.ConfigDict) -> nn.Module:
  """`config.model` = {name, dtype, param_dtype, **model kwargs} → a Flax module."""
  kwargs = model_config.to_dict()
  name = kwargs.pop("name")
  if name not in MODELS:
    raise errors.ConfigError(f"Unknown model {name!r}; known models: {sorted(MODELS)}.")
  for key in ("dtype", "param_dtype"):
    if kwargs[key] not in DTYPES:
      raise errors.ConfigError(f"config.model.{key}={kwargs[key]!r}; choose one of {sorted(DTYPES)}.")
    kwargs[key] = DTYPES[kwargs[key]]
  return MODELS[name](**kwargs)


__all__ = ["MODELS", "build", "ViT", "TextTransformer", "TwoTower", "decode_variant"]
