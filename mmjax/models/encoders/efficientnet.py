"""EfficientNet-Lite image tower (Tan & Le 2019; the Lite variants of tensorflow/tpu's efficientnet/lite), laid out
as the `efficientnet-lite-pytorch` package builds it, so its ImageNet checkpoints import key by key
(mmjax.pretrained.efficientnet) and compute what they compute there.

Lite differs from EfficientNet-B0..B7 in what edge hardware runs well: ReLU6 instead of swish, no squeeze-excite,
and a stem (32) and head (1280) that width scaling leaves alone, as it leaves the repeats of the first and last
stage. Every convolution pads "SAME" the TensorFlow way (total padding max((⌈n/s⌉ − 1)·s + k − n, 0), the odd
pixel at the end: lax's "SAME"), which is the package's dynamic-padding convolution; its static-padding one (used
when a model is built for a fixed image size) pads the same at that size.
"""
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax import errors
from mmjax import nn as mnn
from mmjax.nn.partitioning import dense, logical
from mmjax.nn.transformer import rematerialized

# variant → (width coefficient, depth coefficient, resolution): efficientnet_lite_pytorch/utils.py
# efficientnet_params, from TF's efficientnet_lite_builder.py.
LITE_VARIANTS = {
    "lite0": (1.0, 1.0, 224),
    "lite1": (1.0, 1.1, 240),
    "lite2": (1.1, 1.2, 260),
    "lite3": (1.2, 1.4, 280),
    "lite4": (1.4, 1.8, 300),
}
# One stage a row, before scaling: (repeats, kernel, stride, expand ratio, output filters); the package's block
# strings 'r1_k3_s11_e1_i32_o16', 'r2_k3_s22_e6_i16_o24', ... (a stage's input is the previous stage's output).
STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112),
          (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
STEM_FEATURES = 32
HEAD_FEATURES = 1280
BN_EPSILON = 1e-3  # The package's batch_norm_epsilon (TF's default for these models); its momentum only trains.
FEATURE_MAP = ("batch", None, None, "embed")


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
  """Channels scaled by `width`, rounded to a multiple of `divisor` and never more than 10% down (TF's rule)."""
  scaled = filters * width
  rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
  return rounded + divisor if rounded < 0.9 * scaled else rounded


def block_configs(variant: str) -> list[tuple[int, int, int, int]]:
  """(kernel, stride, expand ratio, output filters) of every MBConv block of `variant`, in order. A stage's
  first block strides; depth scaling rounds each stage's repeats up, except the first and last stage's."""
  width, depth, _ = errors.lookup(LITE_VARIANTS, variant, "EfficientNet-Lite variant")
  blocks = []
  for stage, (repeats, kernel, stride, expand, features) in enumerate(STAGES):
    if 0 < stage < len(STAGES) - 1:
      repeats = math.ceil(depth * repeats)
    features = round_filters(features, width)
    blocks += [(kernel, stride if index == 0 else 1, expand, features) for index in range(repeats)]
  return blocks


def _kernel_init(depthwise: bool):
  """TF EfficientNet's N(0, 2 / fan_out), fan_out = k·k·out_filters. A depthwise kernel is [k, k, 1, C] here but
  [k, k, C, 1] in TF, so its TF fan_out (k·k) is flax's fan_in."""
  init = nn.initializers.variance_scaling(2.0, "fan_in" if depthwise else "fan_out", "normal")
  return logical(init, (None, None, None, "embed"))


class FrozenBatchNorm(nn.Module):
  """x: [..., C] → (x − mean) · scale / √(var + ε) + bias: batch norm in inference form (as detectron2's
  FrozenBatchNorm2d), the same function in training and evaluation.

  mmjax is pure-functional (no mutable `batch_stats` collection), so the running statistics are 1-D params read
  through stop_gradient: their gradient is zero and the optimizer's weight decay spares 1-D params, so AdamW
  never moves them. `scale` and `bias` train. The statistics are those of the checkpoint (identity at init).
  """
  epsilon: float = BN_EPSILON
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    shape = (x.shape[-1],)
    ones, zeros = logical(nn.initializers.ones, ("embed",)), logical(nn.initializers.zeros, ("embed",))
    scale = self.param("scale", ones, shape, self.param_dtype)
    bias = self.param("bias", zeros, shape, self.param_dtype)
    mean = jax.lax.stop_gradient(self.param("mean", zeros, shape, self.param_dtype))
    var = jax.lax.stop_gradient(self.param("var", ones, shape, self.param_dtype))
    # One multiply-add per element, as torch's inference kernel folds it.
    multiplier = scale * jax.lax.rsqrt(var + self.epsilon)
    return x * multiplier.astype(self.dtype) + (bias - mean * multiplier).astype(self.dtype)


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
  """TF's "SAME" padding of one spatial dimension: (before, after), the extra pixel after."""
  total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
  return total // 2, total - total // 2


class DepthwiseConv(nn.Module):
  """x: [B, H, W, C] → [B, ⌈H/s⌉, ⌈W/s⌉, C]: a bias-free "SAME" k×k convolution with one filter per channel
  (kernel [k, k, 1, C], as nn.Conv's with feature_group_count=C).

  On the CPU it is computed as k² shifted multiply-adds, which XLA fuses into one loop: XLA's CPU backend runs a
  grouped convolution through a generic path, 6× slower here (16×112×112×96, 3×3: 0.61 s against 0.10 s),
  which made EfficientNet-Lite0 run at ~6 images/s. GPUs and TPUs have native depthwise kernels, so there it
  is the grouped convolution. Both give the same result (tests/models/test_efficientnet.py).
  """
  kernel: int
  stride: int
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  shifted_taps: bool | None = None  # None: on the CPU only.

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    channels, k, s = x.shape[-1], self.kernel, self.stride
    kernel = self.param("kernel", _kernel_init(True), (k, k, 1, channels), self.param_dtype).astype(self.dtype)
    padding = [_same_padding(x.shape[1], k, s), _same_padding(x.shape[2], k, s)]
    x = x.astype(self.dtype)
    taps = jax.default_backend() == "cpu" if self.shifted_taps is None else self.shifted_taps
    if not taps:
      return jax.lax.conv_general_dilated(x, kernel, (s, s), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                          feature_group_count=channels)
    padded = jnp.pad(x, [(0, 0), *padding, (0, 0)])
    out_h, out_w = -(-x.shape[1] // s), -(-x.shape[2] // s)
    return sum(padded[:, i:i + (out_h - 1) * s + 1:s, j:j + (out_w - 1) * s + 1:s, :] * kernel[i, j, 0]
               for i in range(k) for j in range(k))


class ConvBN(nn.Module):
  """x: [B, H, W, C] → ReLU6(BN(conv(x))): [B, ⌈H/s⌉, ⌈W/s⌉, features]; a bias-free "SAME" k×k convolution
  with stride s, depthwise (one filter per channel, features = C) if `depthwise`; no ReLU6 if not `activate`."""
  features: int
  kernel: int = 1
  stride: int = 1
  depthwise: bool = False
  activate: bool = True
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.depthwise:
      x = DepthwiseConv(self.kernel, self.stride, self.dtype, self.param_dtype, name="conv")(x)
    else:
      x = nn.Conv(self.features, (self.kernel, self.kernel), strides=(self.stride, self.stride), padding="SAME",
                  use_bias=False, dtype=self.dtype, param_dtype=self.param_dtype,
                  kernel_init=_kernel_init(False), name="conv")(x)
    x = FrozenBatchNorm(dtype=self.dtype, param_dtype=self.param_dtype, name="bn")(x)
    return jnp.clip(x, 0, 6) if self.activate else x


class MBConvBlock(nn.Module):
  """x: [B, H, W, C] → [B, ⌈H/s⌉, ⌈W/s⌉, features]: the inverted bottleneck of MobileNetV2. A 1×1 conv expands
  to C·expand channels (skipped when expand = 1), a k×k depthwise conv with stride s filters them, a linear 1×1
  conv projects to `features`; x is added back where the shape is kept."""
  kernel: int
  stride: int
  expand: int
  features: int
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    hidden, kw = x.shape[-1] * self.expand, dict(dtype=self.dtype, param_dtype=self.param_dtype)
    y = ConvBN(hidden, **kw, name="expand")(x) if self.expand != 1 else x
    y = ConvBN(hidden, self.kernel, self.stride, depthwise=True, **kw, name="depthwise")(y)
    y = ConvBN(self.features, activate=False, **kw, name="project")(y)
    if self.stride == 1 and x.shape[-1] == self.features:
      y = y + x
    return nn.with_logical_constraint(y, FEATURE_MAP)


class EfficientNetLite(nn.Module):
  """image: f32[B, H, W, 3] → (pooled [B, 1280], aux{'tokens': [B, N, 1280], 'mask': bool[B, N]}
  [, 'logits': f32[B, num_classes]]).

  The image is normalised as the weights were trained (the ImageNet checkpoint: (pixel − 127) / 128 at 224×224,
  mmjax.pretrained.efficientnet's constants; mmjax.data.photos.preprocess applies them). Stem (3×3 conv, stride
  2) → the MBConv blocks of `variant` (block_configs) → head (1×1 conv to 1280, BN, ReLU6): its feature map's
  N = ⌈H/32⌉·⌈W/32⌉ positions, row-major, are the tokens (all valid), and their mean is `pooled`, the
  feature the ImageNet classifier reads. With `num_classes` > 0 a linear `classifier` on `pooled` gives
  aux['logits'] (1000 for the ImageNet head); the checkpoint's dropout before it is left out.
  Batch norm is frozen (FrozenBatchNorm): statistics come from the checkpoint and never update, so from
  scratch the tower trains without normalisation; it is meant to start from pretrained weights.
  """
  variant: str = "lite0"
  num_classes: int = 0
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  remat: str = "none"

  @nn.compact
  def __call__(self, image: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    if image.ndim != 4 or image.shape[-1] != 3 or not jnp.issubdtype(image.dtype, jnp.floating):
      raise errors.InputError(f"EfficientNetLite expects RGB images f32[B, H, W, 3] normalised as its weights "
                              f"were trained; got {image.dtype}{list(image.shape)}. Prepare photos with "
                              "mmjax.data.photos.preprocess.")
    blocks = block_configs(self.variant)
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    x = ConvBN(STEM_FEATURES, 3, 2, **kw, name="stem")(image.astype(self.dtype))
    x = nn.with_logical_constraint(x, FEATURE_MAP)
    block = rematerialized(MBConvBlock, self.remat)
    for index, (kernel, stride, expand, features) in enumerate(blocks):
      x = block(kernel, stride, expand, features, **kw, name=f"block_{index}")(x)
    x = ConvBN(HEAD_FEATURES, **kw, name="head")(x)
    tokens = nn.with_logical_constraint(x.reshape(x.shape[0], -1, x.shape[-1]), ("batch", "length", "embed"))
    mask = jnp.ones(tokens.shape[:2], bool)
    pooled = mnn.pool_tokens(tokens, mask, "mean")
    aux = {"tokens": tokens, "mask": mask}
    if self.num_classes > 0:
      classifier = dense(self.num_classes, ("embed", None), self.dtype, self.param_dtype, "classifier",
                         kernel_init=nn.initializers.variance_scaling(1 / 3, "fan_out", "uniform"))
      aux["logits"] = classifier(pooled).astype(jnp.float32)
    return pooled, aux
