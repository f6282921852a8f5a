"""Per-modality encoders, chosen by the `name` of their config block.

Every encoder maps its input to (pooled [B, width], aux) where aux holds at least 'tokens' [B, N, width]
and 'mask' bool[B, N] (True = a valid token), so a fusion can take any of them.
"""
from collections.abc import Mapping
from typing import Any

import flax.linen as nn

from mmjax import errors
from mmjax.models.encoders.audio import AudioCNN, AudioSpectrogramTransformer
from mmjax.models.encoders.bert import BertEncoder
from mmjax.models.encoders.classic_text import BagOfWordsEncoder, CnnTextEncoder, LstmTextEncoder
from mmjax.models.encoders.cnn import ConvNet
from mmjax.models.encoders.features import PrecomputedFeatures
from mmjax.models.encoders.efficientnet import EfficientNetLite
from mmjax.models.encoders.text import TextTransformer
from mmjax.models.encoders.video import FactorisedVideoEncoder, TubeletEncoder
from mmjax.models.encoders.vit import VIT_SIZES, ViT, decode_variant
from mmjax.models.encoders.whisper import WhisperEncoder

ENCODERS: dict[str, dict[str, type[nn.Module]]] = {
    "image": {"vit": ViT, "cnn": ConvNet, "efficientnet_lite": EfficientNetLite, "features": PrecomputedFeatures},
    "audio": {"ast": AudioSpectrogramTransformer, "cnn": AudioCNN, "whisper": WhisperEncoder},
    "text": {"transformer": TextTransformer, "bert": BertEncoder, "lstm": LstmTextEncoder, "cnn": CnnTextEncoder,
             "bow": BagOfWordsEncoder},
    "video": {"factorised": FactorisedVideoEncoder, "tubelet": TubeletEncoder},
}
MODALITIES = tuple(ENCODERS)


def build_encoder(modality: str, config: Mapping[str, Any], **kwargs: Any) -> nn.Module:
  """The `modality` encoder of a config block {name, **fields}, e.g. build_encoder("image", {"name": "vit",
  "variant": "S/16"}, dtype=jnp.bfloat16, name="image_encoder"). `kwargs` add module fields such as dtypes."""
  fields = dict(config)
  if "name" not in fields:
    raise errors.ConfigError(f"The {modality} encoder's config block {fields} has no `name`; set one of "
                             f"{sorted(errors.lookup(ENCODERS, modality, 'modality'))}.")
  encoder = errors.lookup(errors.lookup(ENCODERS, modality, "modality"), fields.pop("name"), f"{modality} encoder")
  fields.pop("pretrained", None)  # Imported into the params after init (mmjax.trainer.finetune), not a field.
  return encoder(**fields, **kwargs)


__all__ = ["ENCODERS", "MODALITIES", "VIT_SIZES", "AudioCNN", "AudioSpectrogramTransformer", "BagOfWordsEncoder",
           "BertEncoder", "CnnTextEncoder", "ConvNet", "EfficientNetLite", "FactorisedVideoEncoder",
           "LstmTextEncoder", "PrecomputedFeatures", "TextTransformer", "TubeletEncoder", "ViT", "WhisperEncoder",
           "build_encoder", "decode_variant"]
