"""Models, built from `config.model` by name through the explicit `MODELS` registry.

  two_tower   CLIP/SigLIP: image and text towers into one normalised space (contrastive tasks)
  classifier  encoders → fusion → classifier head (VQA over an answer set, AV-Digits, ...)
  captioner   encoders → fusion → text decoder (captioning, generative VQA)
"""
import dataclasses
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from mmjax import errors, pretrained
from mmjax.models.captioner import Captioner
from mmjax.models.classifier import Classifier
from mmjax.models.encoders import ENCODERS, MODALITIES, build_encoder
from mmjax.models.fusion import DECISION_LEVEL, FUSIONS, TOKEN_LEVEL, FusionOutput, build_fusion
from mmjax.models.multimodal_encoder import MultimodalEncoder
from mmjax.models.text_decoder import TextDecoder
from mmjax.models.two_tower import TwoTower

MODELS: dict[str, type[nn.Module]] = {"two_tower": TwoTower, "classifier": Classifier, "captioner": Captioner}

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def build(model_config: ml_collections.ConfigDict, **data_values: Any) -> nn.Module:
  """`config.model` = {name, dtype, param_dtype, **model fields} → a Flax module.

  `data_values` are fields that belong to the dataset rather than the config (num_classes, sample_rate);
  each is passed to the model if it has such a field.
  """
  kwargs = model_config.to_dict()
  name = kwargs.pop("name")
  model = errors.lookup(MODELS, name, "model", "config.model.name")
  if kwargs.get("pretrained"):
    # A whole-model checkpoint (an HF CLIP) fixes the towers: they come from its own config, not ours.
    kwargs.update(pretrained.architecture(name, kwargs["pretrained"]))
  kwargs.pop("pretrained", None)
  for key in ("dtype", "param_dtype"):
    kwargs[key] = errors.lookup(DTYPES, kwargs[key], "dtype", f"config.model.{key}")
  fields = {field.name for field in dataclasses.fields(model)}
  kwargs.update({key: value for key, value in data_values.items() if key in fields})
  return model(**kwargs)


def vocab_sizes(model_config: ml_collections.ConfigDict) -> dict[str, int]:
  """The vocabulary size of each part of `config.model` that embeds tokens, keyed by its config key."""
  sizes = {}
  for key, block in model_config.items():
    if isinstance(block, ml_collections.ConfigDict) and "vocab_size" in block:
      sizes[f"config.model.{key}.vocab_size"] = block.vocab_size
  for modality, block in (model_config.get("encoders") or {}).items():
    if "vocab_size" in block:
      sizes[f"config.model.encoders.{modality}.vocab_size"] = block.vocab_size
  return sizes


__all__ = ["DECISION_LEVEL", "DTYPES", "ENCODERS", "FUSIONS", "MODALITIES", "MODELS", "TOKEN_LEVEL", "Captioner",
           "Classifier", "FusionOutput", "MultimodalEncoder", "TextDecoder", "TwoTower", "build", "build_encoder",
           "build_fusion", "vocab_sizes"]
