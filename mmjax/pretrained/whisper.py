"""Whisper checkpoints in CTranslate2's format (faster-whisper's model.bin) → WhisperEncoder's params.

CTranslate2's converter (python/ctranslate2/converters/transformers.py, WhisperLoader) stores the encoder as
encoder/conv1, conv2 (torch Conv1d weights [out, in, k]), encoder/layer_N/self_attention/{layer_norm, linear_0
(query, key and value fused along the output axis: [3·D, D]; the key's bias, which Whisper does not have, is
stored as zeros), linear_1 (the output projection)}, encoder/layer_N/ffn/{layer_norm, linear_0, linear_1},
encoder/layer_norm, the fixed position table encoder/position_encodings/encodings and the head count
encoder/num_heads. LayerNorms are gamma/beta; Linear weights are torch's [out, in]. The decoder's weights are
not read. Weights stored as float16 are up-cast to float32 (exactly: every float16 is a float32). The position
table is imported as stored, into WhisperEncoder's `pos_embed` (which starts as the same sinusoids).
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import flax
import numpy as np

from mmjax import errors
from mmjax.pretrained import ctranslate2, files
from mmjax.pretrained.fit import fit

SPEC = "WhisperSpec"
_LAYER = re.compile(r"encoder/layer_(\d+)/(self_attention|ffn)/(layer_norm|linear_0|linear_1)/(gamma|beta|weight|bias)")
# (CTranslate2 sub-layer, its module) → the mmjax module under encoder/block_N.
_LAYER_MODULES = {
    ("self_attention", "layer_norm"): "ln_attn", ("self_attention", "linear_1"): "attn/out",
    ("ffn", "layer_norm"): "ln_mlp", ("ffn", "linear_0"): "mlp/fc1", ("ffn", "linear_1"): "mlp/fc2",
}
_NORM = {"gamma": "scale", "beta": "bias"}


def _attention_in(path: str, param: str, value: np.ndarray, heads: int) -> dict[str, np.ndarray]:
  """linear_0's fused [3·D, D] weight (or [3·D] bias) → query, key and value HeadProjection params
  ([D, H, Dh] kernels, [H, Dh] biases)."""
  out = {}
  for name, part in zip(("query", "key", "value"), np.split(value, 3, axis=0)):
    if param == "weight":
      out[f"{path}/attn/{name}/kernel"] = part.T.reshape(part.shape[1], heads, -1)
    else:
      out[f"{path}/attn/{name}/bias"] = part.reshape(heads, -1)
  return out


def _convert(key: str, value: np.ndarray, heads: int, source: str) -> dict[str, np.ndarray]:
  """One encoder variable of the checkpoint → {mmjax path: value in flax's layout}."""
  if key == "encoder/position_encodings/encodings":
    return {"pos_embed/pos_embedding": value}
  if key in ("encoder/layer_norm/gamma", "encoder/layer_norm/beta"):
    return {f"encoder/ln_final/{_NORM[key.rpartition('/')[2]]}": value}
  conv = re.fullmatch(r"encoder/(conv[12])/(weight|bias)", key)
  if conv:  # torch Conv1d [out, in, k] → flax [k, in, out].
    return {f"{conv.group(1)}/{'kernel' if conv.group(2) == 'weight' else 'bias'}":
            value.transpose(2, 1, 0) if conv.group(2) == "weight" else value}
  layer = _LAYER.fullmatch(key)
  if not layer:
    raise errors.ConfigError(f"{source} holds {key!r}, which is not a Whisper encoder weight; import a Whisper "
                             "model converted by CTranslate2 (faster-whisper's model.bin).")
  path, sublayer, module, param = f"encoder/block_{layer.group(1)}", *layer.group(2, 3, 4)
  if (sublayer, module) == ("self_attention", "linear_0"):
    return _attention_in(path, param, value, heads)
  target = f"{path}/{_LAYER_MODULES[sublayer, module]}"
  if module == "layer_norm":
    return {f"{target}/{_NORM[param]}": value}
  if param == "bias":
    return {f"{target}/bias": value}
  if target.endswith("attn/out"):  # [D, H·Dh] → HeadMerge's [H, Dh, D].
    return {f"{target}/kernel": value.T.reshape(heads, -1, value.shape[0])}
  return {f"{target}/kernel": value.T}


def import_params(path: str, expected: Mapping[str, Any]) -> dict[str, Any]:
  """The params of a WhisperEncoder (`expected`: its freshly initialised params or their shapes) from the
  CTranslate2 Whisper model.bin at `path` (the file or its folder). ConfigErrors name the file and what does
  not fit: another model's file, another head count or width."""
  file = files.find(path, ("model.bin",), "Whisper checkpoint (CTranslate2)")
  model = ctranslate2.read(file)
  if model.spec != SPEC:
    raise errors.ConfigError(f"{file} is a CTranslate2 {model.spec!r}, not a {SPEC!r}; import a Whisper model.")
  variables = {k: v for k, v in model.variables.items() if k.startswith("encoder/")}
  expected = flax.linen.unbox(expected)
  query = flax.traverse_util.flatten_dict(flax.core.unfreeze(expected), sep="/").get(
      "encoder/block_0/attn/query/kernel")
  heads = int(variables.pop("encoder/num_heads", 0))
  if query is not None and np.shape(query)[1] != heads:
    raise errors.ConfigError(f"{file} has {heads} attention heads but the configured Whisper encoder has "
                             f"{np.shape(query)[1]}; configure the variant the checkpoint was trained as.")
  mapped = {}
  for key, value in variables.items():
    mapped.update(_convert(key, np.asarray(value, np.float32), heads, file))
  return fit(expected, flax.traverse_util.unflatten_dict(mapped, sep="/"), source=file)
