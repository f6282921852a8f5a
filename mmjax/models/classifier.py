"""Classifier over any set of modalities: encoders → fusion → head, e.g. VQA over a fixed answer set."""
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from mmjax import errors
from mmjax import nn as mnn
from mmjax.models.multimodal_encoder import MultimodalEncoder


class Classifier(MultimodalEncoder):
  """{modality: input} → (logits f32[B, num_classes], aux{"unimodal_logits": {modality: f32[B, num_classes]}}).

  A decision-level fusion returns the logits itself (and per-modality ones, for their auxiliary losses);
  any other fusion a pooled vector that a ClassifierHead (Dense(mlp_dim) → GELU → Dense) classifies.
  A model with one modality is the unimodal baseline of the same architecture.
  """

  def setup(self):
    super().setup()
    if self.num_classes < 1:
      raise errors.ConfigError(f"A classifier needs num_classes ≥ 1; got {self.num_classes} (it is set from the "
                               "dataset's labels of config.task.label when a run is built).")
    if not self.fuse.decision_level:
      self.head = mnn.ClassifierHead(self.mlp_dim, self.num_classes, self.dtype, self.param_dtype)

  def __call__(self, inputs: Mapping[str, jax.Array]) -> tuple[jax.Array, dict[str, Any]]:
    fused = self.encode(inputs)
    logits = fused.logits if self.fuse.decision_level else self.head(fused.pooled)
    unimodal = {m: x.astype(jnp.float32) for m, x in (fused.unimodal_logits or {}).items()}
    return logits.astype(jnp.float32), {"unimodal_logits": unimodal}
