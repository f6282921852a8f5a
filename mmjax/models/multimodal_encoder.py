"""The shared front of the composed models: per-modality encoders, projected to one width, then a fusion."""
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax import errors
from mmjax import nn as mnn
from mmjax.models.encoders import build_encoder
from mmjax.models.fusion import FusionOutput, build_fusion


class MultimodalEncoder(nn.Module):
  """{modality: input} → FusionOutput, the base of the Classifier and the Captioner.

  `encoders` maps each modality the model reads ("image", "audio", "text") to its encoder's config
  block ({"name": "vit", "variant": "Micro/16", ...}, see mmjax.models.encoders). Each encoder's tokens
  are projected to `width` and the {modality: tokens} dict, with each modality's valid mask, goes through
  `fusion` (a name of mmjax.models.fusion.FUSIONS) of `fusion_depth` layers with `num_heads` heads and
  MLPs of `mlp_dim`; `fusion_options` are the fusion's own fields (num_queries, num_bottlenecks, ...).
  The towers are named `<modality>_encoder`, as TwoTower's are, so `config.init_from` loads a contrastive
  run's towers into them (mmjax.trainer.finetune).

  `num_classes` (for decision-level fusions and the Classifier's head) and `sample_rate` (of an audio
  input) belong to the dataset and are filled in from its metadata when a run is built.
  """
  encoders: Mapping[str, Mapping[str, Any]]
  fusion: str
  width: int
  fusion_depth: int
  num_heads: int
  mlp_dim: int
  fusion_options: Mapping[str, Any] | None = None
  num_classes: int = 0
  sample_rate: int | None = None
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  remat: str = "none"  # A policy of mmjax.nn.REMAT_POLICIES, for every Transformer block.

  @property
  def modalities(self) -> tuple[str, ...]:
    return tuple(self.encoders)

  def setup(self):
    if not self.encoders:
      raise errors.ConfigError("config.model.encoders configures no modality; give at least one of image, audio, "
                               "text an encoder block.")
    kwargs = dict(dtype=self.dtype, param_dtype=self.param_dtype, remat=self.remat)
    for modality, config in self.encoders.items():
      data_fields = {"sample_rate": self.sample_rate} if modality == "audio" else {}
      setattr(self, f"{modality}_encoder", build_encoder(modality, config, **kwargs, **data_fields))
    self.projections = {m: mnn.dense(self.width, (None, "embed"), self.dtype, self.param_dtype)
                        for m in self.modalities}
    self.fuse = build_fusion(self.fusion, width=self.width, depth=self.fusion_depth, num_heads=self.num_heads,
                             mlp_dim=self.mlp_dim, num_classes=self.num_classes, **(self.fusion_options or {}),
                             **kwargs)

  def encode(self, inputs: Mapping[str, jax.Array]) -> FusionOutput:
    """{modality: input} (exactly the configured modalities) → the fusion's output."""
    if set(inputs) != set(self.modalities):
      raise errors.InputError(f"This model was configured for modalities {sorted(self.modalities)} "
                              f"(config.model.encoders) but called with {sorted(inputs)}.")
    tokens, masks = {}, {}
    for modality in self.modalities:
      _, aux = getattr(self, f"{modality}_encoder")(inputs[modality])
      tokens[modality] = self.projections[modality](aux["tokens"])
      masks[modality] = aux["mask"]
    return self.fuse(tokens, masks)
