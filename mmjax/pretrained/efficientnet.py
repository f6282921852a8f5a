"""EfficientNet-Lite checkpoints of the `efficientnet-lite-pytorch` package (a torch state_dict, .pth) →
mmjax.models.encoders.EfficientNetLite, and the preprocessing the ImageNet weights expect.

The checkpoint's keys name the package's modules: _conv_stem/_bn0 (stem), _blocks.N._expand_conv/_bn0,
_depthwise_conv/_bn1, _project_conv/_bn2 (block N), _conv_head/_bn1 (head), _fc (the ImageNet classifier).
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import flax
import numpy as np

from mmjax import errors
from mmjax.pretrained import torch_pickle
from mmjax.pretrained.fit import fit

# The ImageNet checkpoint's own preprocessing. Its weights are TF's efficientnet-lite0 converted to torch
# (ml-illustrated/EfficientNet-Lite-PyTorch, tf_to_pytorch/convert_tf_to_pt/load_tf_weights.py). TF trained and
# evaluated the Lite models on (pixel − 127) / 128 ("inception-style" for post-quantization: MEAN_RGB = [127.0]*3,
# STDDEV_RGB = [128.0]*3 in tensorflow/tpu's efficientnet/lite/efficientnet_lite_builder.py) at 224 px
# (efficientnet_params: 'efficientnet-lite0': (1.0, 1.0, 224, 0.2)), after a bicubic eval crop of the central
# 224 / (224 + 32) of the shorter side (efficientnet/preprocessing.py, CROP_PADDING = 32). The package's README
# repeats efficientnet_pytorch's ImageNet mean/std (0.485, 0.456, 0.406) / (0.229, 0.224, 0.225), which belongs to
# B0..B7: measured on the six test photos it feeds the stem's batch norm 4.5× the variance of its running
# statistics (0.90× with 127/128) and lowers the top-1 probabilities (espresso 0.78 instead of 0.95).
RESOLUTION = 224
CROP_FRACTION = 224 / 256
MEAN_RGB = (127.0, 127.0, 127.0)  # In pixel values 0..255.
STDDEV_RGB = (128.0, 128.0, 128.0)

_BLOCK = re.compile(r"_blocks\.(\d+)\.(_expand_conv|_depthwise_conv|_project_conv|_bn0|_bn1|_bn2)\.(\w+)")
_TOP = re.compile(r"(_conv_stem|_bn0|_conv_head|_bn1|_fc)\.(\w+)")
# The package's module → (mmjax module, kind). Inside a block _bn0/_bn1/_bn2 follow the expand, depthwise and
# project convolutions; outside it _bn0 follows the stem and _bn1 the head.
_MODULES = {
    "_conv_stem": ("stem/conv", "conv"), "_bn0": ("stem/bn", "bn"),
    "_conv_head": ("head/conv", "conv"), "_bn1": ("head/bn", "bn"), "_fc": ("classifier", "dense"),
    "_expand_conv": ("expand/conv", "conv"), "_depthwise_conv": ("depthwise/conv", "conv"),
    "_project_conv": ("project/conv", "conv"),
}
_BLOCK_BN = {"_bn0": "expand/bn", "_bn1": "depthwise/bn", "_bn2": "project/bn"}
# torch's parameter (or buffer) name → mmjax's, per kind. num_batches_tracked only counts training steps.
_PARAMS = {
    "conv": {"weight": "kernel"},
    "bn": {"weight": "scale", "bias": "bias", "running_mean": "mean", "running_var": "var",
           "num_batches_tracked": None},
    "dense": {"weight": "kernel", "bias": "bias"},
}


def _convert(key: str, value: np.ndarray, source: str) -> tuple[str | None, np.ndarray]:
  """The checkpoint's `key` → (its mmjax path, or None for a counter to drop; value in flax's layout). A torch
  conv weight is [out, in/groups, kh, kw] (a depthwise one [C, 1, k, k]); flax's kernel [kh, kw, in/groups, out].
  A Linear weight is [out, in]; a Dense kernel [in, out]."""
  block, top = _BLOCK.fullmatch(key), _TOP.fullmatch(key)
  if block:
    module, param = block.group(2), block.group(3)
    path, kind = (_BLOCK_BN[module], "bn") if module in _BLOCK_BN else _MODULES[module]
    path = f"block_{int(block.group(1))}/{path}"
  elif top:
    (path, kind), param = _MODULES[top.group(1)], top.group(2)
  else:
    path, kind, param = None, None, None
  if kind is None or param not in _PARAMS[kind]:
    raise errors.ConfigError(f"{source} holds {key!r}, which is not an EfficientNet-Lite weight (EfficientNet-B* "
                             "has squeeze-excite weights, _se_*); import an efficientnet-lite-pytorch checkpoint.")
  name = _PARAMS[kind][param]
  if name is None:
    return None, value
  if name == "kernel":
    value = value.transpose(2, 3, 1, 0) if kind == "conv" else value.T
  return f"{path}/{name}", value


def import_params(path: str, expected: Mapping[str, Any]) -> dict[str, Any]:
  """The params of an EfficientNetLite (`expected`: its freshly initialised params or their shapes) from the
  state_dict at `path`. Without a `classifier` in `expected` (num_classes=0) the checkpoint's _fc is left out,
  as the package's from_pretrained(load_fc=False) does; a ConfigError names the first weight that does not fit."""
  state = torch_pickle.load(path)
  if not isinstance(state, Mapping) or not all(isinstance(v, np.ndarray) for v in state.values()):
    raise errors.ConfigError(f"{path} is not a state_dict (a mapping of names to tensors); save the model's "
                             "state_dict().")
  mapped = {}
  for key, value in state.items():
    name, value = _convert(key, value, path)
    if name is not None and not (name.startswith("classifier/") and "classifier" not in expected):
      mapped[name] = value
  return fit(expected, flax.traverse_util.unflatten_dict(mapped, sep="/"), source=path)
