"""Hugging Face CLIP checkpoints (a `CLIPModel` folder: config.json + model.safetensors) → a TwoTower.

`architecture` reads the towers' shapes from config.json, so a config names only the checkpoint;
`import_params` maps every tensor of model.safetensors onto the TwoTower params tree. The mapping relies on
these equalities with HF's CLIP (proven on a recorded tiny checkpoint, tests/pretrained/test_hf_clip_import.py):

- the vision tower is mmjax's ViT with `ln_pre` (CLIP's "pre_layrnorm") and a cls token. HF's patch conv has
  no bias: the ViT keeps its bias and gets zeros, which computes the same. CLIP's post_layernorm normalises the
  pooled cls token; mmjax's encoder-final LayerNorm normalises every token before pooling, the same on the cls.
- the text tower is causal and pools at the first eos. CLIP's id 0 is a real token ("!"), not padding, so the
  TextTransformer's validity mask comes from `eos_id`. Before transformers PR #24773 configs said
  eos_token_id=2 and HF pooled at argmax(input_ids): the highest id, <|endoftext|> = vocab_size - 1.
- torch Linear weights are [out, in]: kernels are their transpose, split into heads for attention.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Any

import flax
import numpy as np
from safetensors.numpy import load_file

from mmjax import errors
from mmjax.pretrained.files import find
from mmjax.pretrained.fit import fit

# HF `hidden_act` → mmjax.nn.ACTIVATIONS. HF "gelu" is the exact erf GELU; "gelu_new" and "gelu_pytorch_tanh"
# are the tanh approximation, mmjax's "gelu".
ACTIVATIONS = {"quick_gelu": "quick_gelu", "gelu": "gelu_erf", "gelu_new": "gelu", "gelu_pytorch_tanh": "gelu",
               "relu": "relu"}
# transformers' CLIPVisionConfig / CLIPTextConfig / CLIPConfig defaults, for keys a config.json leaves out.
VISION_DEFAULTS = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                       num_channels=3, image_size=224, patch_size=32, hidden_act="quick_gelu", layer_norm_eps=1e-5)
TEXT_DEFAULTS = dict(vocab_size=49408, hidden_size=512, intermediate_size=2048, num_hidden_layers=12,
                     num_attention_heads=8, max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5,
                     eos_token_id=49407)
MODEL_DEFAULTS = dict(projection_dim=512, logit_scale_init_value=2.6592)
LEGACY_EOS_ID = 2
KEY = "HF CLIP checkpoint"


def _folder(path: str) -> str:
  """The checkpoint folder of `path`, which is the folder or a file inside it (such as its model.safetensors)."""
  return path if os.path.isdir(path) else os.path.dirname(path)


def _config(path: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
  """(model, vision, text) blocks of the checkpoint's config.json, with transformers' defaults filled in."""
  config_path = find(_folder(path), ("config.json",), KEY)
  with open(config_path) as f:
    config = json.load(f)
  if not isinstance(config, dict) or config.get("model_type", "clip") != "clip":
    raise errors.ConfigError(f"{config_path} is not the config of a Hugging Face CLIPModel (model_type 'clip'); "
                             "point the checkpoint at a CLIP folder.")
  return ({**MODEL_DEFAULTS, **config}, {**VISION_DEFAULTS, **config.get("vision_config", {})},
          {**TEXT_DEFAULTS, **config.get("text_config", {})})


def _activation(tower: Mapping[str, Any], name: str) -> str:
  return errors.lookup(ACTIVATIONS, tower["hidden_act"], f"config.json {name}.hidden_act")


def architecture(path: str) -> dict[str, Any]:
  """The TwoTower fields (image, text, embed_dim, logit_scale_init) of the CLIP checkpoint at `path`."""
  model, vision, text = _config(path)
  grid = vision["image_size"] // vision["patch_size"]
  eos_id = text["vocab_size"] - 1 if text["eos_token_id"] == LEGACY_EOS_ID else text["eos_token_id"]
  image_fields = dict(
      name="vit", variant=f"B/{vision['patch_size']}", width=vision["hidden_size"], depth=vision["num_hidden_layers"],
      num_heads=vision["num_attention_heads"], mlp_dim=vision["intermediate_size"], patch_size=vision["patch_size"],
      channels=vision["num_channels"], pool="cls", posemb="learn", max_tokens=grid * grid + 1, ln_pre=True,
      activation=_activation(vision, "vision_config"), epsilon=vision["layer_norm_eps"])
  text_fields = dict(
      name="transformer", vocab_size=text["vocab_size"], width=text["hidden_size"], depth=text["num_hidden_layers"],
      num_heads=text["num_attention_heads"], mlp_dim=text["intermediate_size"],
      max_len=text["max_position_embeddings"], causal=True, pool="last", eos_id=eos_id,
      activation=_activation(text, "text_config"), epsilon=text["layer_norm_eps"])
  return dict(image=image_fields, text=text_fields, embed_dim=model["projection_dim"],
              logit_scale_init=float(model["logit_scale_init_value"]))


class _Tensors:
  """The checkpoint's tensors, taken one by one, so that a missing tensor and a tensor left unmapped are both
  errors naming it (a checkpoint of another CLIP variant must not import partly)."""

  def __init__(self, path: str):
    self.path = path
    self.tensors = {name: value for name, value in load_file(path).items() if not name.endswith("position_ids")}

  def take(self, name: str) -> np.ndarray:
    if name not in self.tensors:
      raise errors.ConfigError(f"{self.path} has no tensor {name}; point the checkpoint at a Hugging Face "
                               "CLIPModel saved with safetensors.")
    return self.tensors.pop(name)

  def linear(self, prefix: str, bias: bool = True) -> dict[str, np.ndarray]:
    params = {"kernel": self.take(f"{prefix}.weight").T}
    if bias:
      params["bias"] = self.take(f"{prefix}.bias")
    return params

  def layer_norm(self, prefix: str) -> dict[str, np.ndarray]:
    return {"scale": self.take(f"{prefix}.weight"), "bias": self.take(f"{prefix}.bias")}

  def attention(self, prefix: str, num_heads: int) -> dict[str, dict[str, np.ndarray]]:
    """q/k/v_proj → HeadProjection kernels [D, H, Dh]; out_proj → HeadMerge kernel [H, Dh, D]."""
    params = {}
    for ours, theirs in (("query", "q_proj"), ("key", "k_proj"), ("value", "v_proj")):
      linear = self.linear(f"{prefix}.{theirs}")
      params[ours] = {"kernel": linear["kernel"].reshape(linear["kernel"].shape[0], num_heads, -1),
                      "bias": linear["bias"].reshape(num_heads, -1)}
    out = self.linear(f"{prefix}.out_proj")
    params["out"] = {"kernel": out["kernel"].reshape(num_heads, -1, out["kernel"].shape[-1]), "bias": out["bias"]}
    return params

  def encoder(self, prefix: str, num_heads: int, final_norm: str) -> dict[str, Any]:
    """CLIPEncoder layers (as many as the checkpoint has) and the tower's last LayerNorm → mmjax's Encoder."""
    depth = len({int(m.group(1)) for name in self.tensors if (m := re.match(rf"{prefix}\.layers\.(\d+)\.", name))})
    params: dict[str, Any] = {f"block_{i}": {
        "ln_attn": self.layer_norm(f"{prefix}.layers.{i}.layer_norm1"),
        "attn": self.attention(f"{prefix}.layers.{i}.self_attn", num_heads),
        "ln_mlp": self.layer_norm(f"{prefix}.layers.{i}.layer_norm2"),
        "mlp": {"fc1": self.linear(f"{prefix}.layers.{i}.mlp.fc1"), "fc2": self.linear(f"{prefix}.layers.{i}.mlp.fc2")},
    } for i in range(depth)}
    params["ln_final"] = self.layer_norm(final_norm)
    return params


def import_params(path: str, expected: Mapping[str, Any]) -> dict[str, Any]:
  """The TwoTower params from the CLIP checkpoint folder `path` (or its model.safetensors), checked against
  `expected`, the TwoTower's freshly initialised params (arrays or shapes, boxed or not)."""
  _, vision, text = _config(path)
  tensors = _Tensors(find(_folder(path), ("model.safetensors",), KEY))
  patch = tensors.take("vision_model.embeddings.patch_embedding.weight")  # [out, in, kh, kw]
  image_encoder = {
      "patch_embed": {"conv": {"kernel": patch.transpose(2, 3, 1, 0), "bias": np.zeros(patch.shape[0], patch.dtype)}},
      "cls": tensors.take("vision_model.embeddings.class_embedding")[None, None],
      "pos_embed": {"pos_embedding": tensors.take("vision_model.embeddings.position_embedding.weight")},
      "ln_pre": tensors.layer_norm("vision_model.pre_layrnorm"),
      "encoder": tensors.encoder("vision_model.encoder", vision["num_attention_heads"], "vision_model.post_layernorm"),
  }
  text_encoder = {
      "embed": {"embedding": {"embedding": tensors.take("text_model.embeddings.token_embedding.weight")}},
      "pos_embed": {"pos_embedding": tensors.take("text_model.embeddings.position_embedding.weight")},
      "encoder": tensors.encoder("text_model.encoder", text["num_attention_heads"], "text_model.final_layer_norm"),
  }
  mapped = {"image_encoder": image_encoder, "text_encoder": text_encoder,
            "image_proj": tensors.linear("visual_projection", bias=False),
            "text_proj": tensors.linear("text_projection", bias=False),
            "logit_scale": tensors.take("logit_scale")}
  if tensors.tensors:
    raise errors.ConfigError(f"{tensors.path} has tensors a CLIPModel does not, such as {sorted(tensors.tensors)[0]}; "
                             "point the checkpoint at a Hugging Face CLIPModel.")
  return fit(flax.linen.unbox(expected), mapped, source=tensors.path)
