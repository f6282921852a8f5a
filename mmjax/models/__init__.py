"""Models, built from `config.model` by name through the explicit `MODELS` registry.

  two_tower   CLIP/SigLIP: image and text towers into one normalised space (contrastive tasks)
  classifier  encoders → fusion → classifier head (VQA over an answer set, AV-Digits, ...)
  captioner   encoders → fusion → text decoder (captioning, generative VQA, speech to text)
  ctc         audio encoder → per-time-step scores over characters (speech to text, mmjax.tasks.ctc)
"""
import dataclasses
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from mmjax import errors, pretrained
from mmjax.models.captioner import Captioner
from mmjax.models.classifier import Classifier
from mmjax.models.ctc import CtcRecognizer
from mmjax.models.encoders import ENCODERS, MODALITIES, build_encoder
from mmjax.models.fusion import DECISION_LEVEL, FUSIONS, TOKEN_LEVEL, FusionOutput, build_fusion
from mmjax.models.lstm_decoder import LSTMDecoder
from mmjax.models.multimodal_encoder import MultimodalEncoder
from mmjax.models.pretrained_encoder import load_pretrained_encoder
from mmjax.models.text_decoder import TextDecoder
from mmjax.models.two_tower import TwoTower

MODELS: dict[str, type[nn.Module]] = {"two_tower": TwoTower, "classifier": Classifier, "captioner": Captioner,
                                      "ctc": CtcRecognizer}

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def build(model_config: ml_collections.ConfigDict, **data_values: Any) -> nn.Module:
  """`config.model` = {name, dtype, param_dtype, **model fields} → a Flax module.

  `data_values` are fields that belong to the dataset rather than the config (num_classes, sample_rate);
  each is passed to the model if it has such a field. `vocab_size` among them (the tokenizer's) fills every
  block whose `vocab_size` is 0 (the configs of datasets whose vocabulary is built from the data).
  """
  kwargs = _fill_vocab_sizes(model_config.to_dict(), data_values.pop("vocab_size", 0))
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


def _fill_vocab_sizes(block: dict[str, Any], vocab_size: int) -> dict[str, Any]:
  filled = {key: _fill_vocab_sizes(value, vocab_size) if isinstance(value, dict) else value
            for key, value in block.items()}
  if filled.get("vocab_size") == 0 and vocab_size:
    filled["vocab_size"] = vocab_size
  return filled


def vocab_sizes(model_config: ml_collections.ConfigDict) -> dict[str, int]:
  """The vocabulary size of each part of `config.model` that embeds tokens, keyed by its config key (0: the
  tokenizer's, filled in by `build`)."""
  sizes = {}
  for key, block in model_config.items():
    if isinstance(block, ml_collections.ConfigDict) and "vocab_size" in block:
      sizes[f"config.model.{key}.vocab_size"] = block.vocab_size
  for modality, block in (model_config.get("encoders") or {}).items():
    if "vocab_size" in block:
      sizes[f"config.model.encoders.{modality}.vocab_size"] = block.vocab_size
  return sizes


__all__ = ["DECISION_LEVEL", "DTYPES", "ENCODERS", "FUSIONS", "MODALITIES", "MODELS", "TOKEN_LEVEL", "Captioner",
           "Classifier", "CtcRecognizer", "FusionOutput", "LSTMDecoder", "MultimodalEncoder", "TextDecoder", "TwoTower",
           "build", "build_encoder", "build_fusion", "load_pretrained_encoder", "vocab_sizes"]
