"""Classifier over any subset of {image, audio, text}, fused by the fusion named in the config."""
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax import errors
from mmjax.models.audio_encoder import build_audio_encoder
from mmjax.models.cnn import ConvNet
from mmjax.models.fusion import ClassifierHead, build_fusion
from mmjax.models.image_encoder import ViT
from mmjax.models.text_encoder import TextTransformer
from mmjax.nn.partitioning import DEFAULT_KERNEL_INIT, logical

MODALITIES = ("image", "audio", "text")
IMAGE_ENCODERS = {"vit": ViT, "cnn": ConvNet}


def _image_encoder(kind: str, **kwargs) -> nn.Module:
  if kind not in IMAGE_ENCODERS:
    raise errors.ConfigError(f"Unknown image encoder kind {kind!r}; known kinds: {sorted(IMAGE_ENCODERS)}.")
  return IMAGE_ENCODERS[kind](**kwargs)


class MultimodalClassifier(nn.Module):
  """(image f32[B, H, W, C], audio f32[B, T], text i32[B, L]), any non-empty subset →
  (logits f32[B, num_classes], aux{"unimodal_logits": {modality: f32[B, num_classes]}}).

  Each configured modality is encoded to tokens with a valid mask, projected to `width`, and
  the token dict goes through `fusion` (a name of mmjax.models.fusion.FUSIONS): a decision-level
  fusion returns the logits itself, any other fusion a pooled vector that an MLP head classifies.
  A model with one modality is the unimodal baseline of the same architecture. `image` and
  `audio` are encoder kwargs with a `kind` ("vit"/"cnn"; "ast"/"cnn"); `text` TextTransformer's.
  `fusion_options` go to the fusion (e.g. num_queries, num_bottlenecks, fusion_layer).
  """
  num_classes: int
  image: dict | None = None
  audio: dict | None = None
  text: dict | None = None
  fusion: str = "early"
  width: int = 64
  fusion_depth: int = 1
  num_heads: int = 4
  mlp_dim: int = 256
  fusion_options: dict | None = None
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  remat: str = "none"

  @property
  def modalities(self) -> tuple[str, ...]:
    return tuple(m for m in MODALITIES if getattr(self, m) is not None)

  def setup(self):
    if not self.modalities:
      raise errors.ConfigError(f"config.model configures no modality; set at least one of {list(MODALITIES)}.")
    kwargs = dict(dtype=self.dtype, param_dtype=self.param_dtype, remat=self.remat)
    # Named like TwoTower's towers (`image_encoder`, ...), so `config.init_from` loads them (mmjax.finetune).
    if self.image is not None:
      self.image_encoder = _image_encoder(**self.image, **kwargs)
    if self.audio is not None:
      self.audio_encoder = build_audio_encoder(**self.audio, **kwargs)
    if self.text is not None:
      self.text_encoder = TextTransformer(**self.text, **kwargs)
    self.projections = {m: nn.Dense(self.width, dtype=self.dtype, param_dtype=self.param_dtype,
                                    kernel_init=logical(DEFAULT_KERNEL_INIT, (None, "embed")),
                                    bias_init=logical(nn.initializers.zeros, ("embed",)))
                        for m in self.modalities}
    self.fuse = build_fusion(self.fusion, width=self.width, depth=self.fusion_depth, num_heads=self.num_heads,
                             mlp_dim=self.mlp_dim, num_classes=self.num_classes, **(self.fusion_options or {}),
                             **kwargs)
    self.head = ClassifierHead(self.mlp_dim, self.num_classes, self.dtype, self.param_dtype)

  def encode(self, inputs: Mapping[str, jax.Array]) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
    """{modality: input} → ({modality: tokens f32[B, N_m, width]}, {modality: valid bool[B, N_m]})."""
    tokens, masks = {}, {}
    for modality in self.modalities:
      _, aux = getattr(self, f"{modality}_encoder")(inputs[modality])
      tokens[modality] = self.projections[modality](aux["tokens"])
      masks[modality] = aux["mask"] if "mask" in aux else jnp.ones(aux["tokens"].shape[:2], bool)
    return tokens, masks

  def __call__(self, image: jax.Array | None = None, audio: jax.Array | None = None,
               text: jax.Array | None = None) -> tuple[jax.Array, dict[str, Any]]:
    inputs = {"image": image, "audio": audio, "text": text}
    given = tuple(m for m in MODALITIES if inputs[m] is not None)
    if given != self.modalities:
      raise errors.InputError(f"This model was configured for modalities {list(self.modalities)} "
                              f"(config.model.image/audio/text) but called with {list(given)}.")
    fused = self.fuse(*self.encode(inputs))
    logits = fused.logits if fused.logits is not None else self.head(fused.pooled)
    unimodal = {m: x.astype(jnp.float32) for m, x in (fused.unimodal_logits or {}).items()}
    return logits.astype(jnp.float32), {"unimodal_logits": unimodal}
