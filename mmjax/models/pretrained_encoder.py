"""One pretrained encoder on its own, outside any composed model: for looking at a checkpoint (a notebook,
experiments/classify_photos.py) or building on its features."""
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax

from mmjax import errors, pretrained
from mmjax.models.encoders import build_encoder


def load_pretrained_encoder(modality: str, block: Mapping[str, Any], example: jax.Array,
                            **fields: Any) -> tuple[nn.Module, dict[str, Any]]:
  """(module, params) of the `modality` encoder of config `block` ({name, pretrained, ...}, as in a model
  config), its weights imported from the checkpoint `block["pretrained"]` names (a known name or a path).
  `example` is an input batch (its shapes only are used); `fields` are extra module fields, e.g. num_classes=1000
  for EfficientNet's ImageNet head."""
  if not block.get("pretrained"):
    raise errors.ConfigError(f"The {modality} encoder block {dict(block)} names no `pretrained` checkpoint.")
  module = build_encoder(modality, block, **fields)
  expected = nn.meta.unbox(jax.eval_shape(module.init, jax.random.key(0), example))["params"]
  importer = errors.lookup(pretrained.IMPORTERS, block["name"], "encoder with pretrained weights",
                           f"{modality} encoder name")
  return module, importer(pretrained.resolve(block["pretrained"], f"the {modality} encoder's `pretrained`"), expected)
