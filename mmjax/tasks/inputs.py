"""Which batch field feeds which of a model's modalities (`config.task.inputs`)."""
from collections.abc import Mapping

import flax.linen as nn
import jax

from mmjax import errors


class ModelInputs:
  """`config.task.inputs` = {modality: batch field}, e.g. {"image": "image", "text": "question"}: called on a
  batch, the {modality: array} dict a composed model (mmjax.models.MultimodalEncoder) takes."""

  def __init__(self, inputs: Mapping[str, str], model: nn.Module):
    self.mapping = dict(inputs)
    if set(self.mapping) != set(model.modalities):
      raise errors.ConfigError(f"config.task.inputs feeds modalities {sorted(self.mapping)} but the model is "
                               f"configured for {sorted(model.modalities)} (config.model.encoders); make them the "
                               "same.")

  @property
  def fields(self) -> tuple[str, ...]:
    return tuple(self.mapping.values())

  def __call__(self, batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    return {modality: batch[field] for modality, field in self.mapping.items()}
