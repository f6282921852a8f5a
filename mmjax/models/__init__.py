"""Models, built from `config.model` by name through the explicit `MODELS` registry."""
import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from mmjax import errors
from mmjax.models.audio_encoder import AUDIO_ENCODERS, AudioCNN, AudioSpectrogramTransformer
from mmjax.models.captioner import Captioner
from mmjax.models.cnn import ConvNet
from mmjax.models.fusion import FUSIONS, FusionOutput, build_fusion
from mmjax.models.fused_encoder import FusedEncoder
from mmjax.models.fusion_classifier import FusionClassifier
from mmjax.models.image_encoder import ViT, decode_variant
from mmjax.models.multimodal_classifier import MultimodalClassifier
from mmjax.models.text_decoder import TextDecoder
from mmjax.models.text_encoder import TextTransformer
from mmjax.models.two_tower import TwoTower

MODELS = {"two_tower": TwoTower, "captioner": Captioner, "fusion_classifier": FusionClassifier,
          "multimodal_classifier": MultimodalClassifier}

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


def vocab_sizes(model_config: ml_collections.ConfigDict) -> dict[str, int]:
  """The vocabulary size of each part of `config.model` that embeds tokens, keyed by its config key."""
  return {f"config.model.{key}.vocab_size": model_config[key].vocab_size
          for key in ("text", "decoder") if model_config.get(key) is not None}


__all__ = ["AUDIO_ENCODERS", "FUSIONS", "MODELS", "build", "build_fusion", "vocab_sizes", "AudioCNN",
           "AudioSpectrogramTransformer", "Captioner", "ConvNet", "FusedEncoder", "FusionClassifier", "FusionOutput",
           "MultimodalClassifier", "TextDecoder", "TextTransformer", "TwoTower", "ViT", "decode_variant"]
