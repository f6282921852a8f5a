"""Classifier over any set of modalities: encoders → fusion → head, e.g. VQA over a fixed answer set."""
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from mmjax import errors
from mmjax import nn as mnn
from mmjax.models.multimodal_encoder import MultimodalEncoder


class Classifier(MultimodalEncoder):
  """{modality: input} → (logits f32[B, num_classes], aux{"unimodal_logits": {modality: f32[B, num_classes]}[,
  "score": f32[B]]}).

  A decision-level fusion returns the logits itself (and per-modality ones, for their auxiliary losses);
  any other fusion a pooled vector that a ClassifierHead (Dense(mlp_dim) → GELU → Dense) classifies.
  A model with one modality is the unimodal baseline of the same architecture.

  `score_head`: a second head regresses a continuous score (CMU-MOSI's sentiment in −3..3) from the fusion's
  pooled vector, beside the class logits. For a decision-level fusion that vector is the mean of the modalities'
  pooled vectors, so its score is fused at the feature level while its classes are fused by decision.
  """
  score_head: bool = False

  def setup(self):
    super().setup()
    if self.num_classes < 1:
      raise errors.ConfigError(f"A classifier needs num_classes ≥ 1; got {self.num_classes} (it is set from the "
                               "dataset's labels of config.task.label when a run is built).")
    if not self.fuse.decision_level:
      self.head = mnn.ClassifierHead(self.mlp_dim, self.num_classes, self.dtype, self.param_dtype)
    if self.score_head:
      self.score_regressor = mnn.ClassifierHead(self.mlp_dim, 1, self.dtype, self.param_dtype)

  def __call__(self, inputs: Mapping[str, jax.Array]) -> tuple[jax.Array, dict[str, Any]]:
    fused = self.encode(inputs)
    logits = fused.logits if self.fuse.decision_level else self.head(fused.pooled)
    aux = {"unimodal_logits": {m: x.astype(jnp.float32) for m, x in (fused.unimodal_logits or {}).items()}}
    if self.score_head:
      aux["score"] = self.score_regressor(fused.pooled)[:, 0]
    return logits.astype(jnp.float32), aux
