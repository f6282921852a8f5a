"""Vision Transformer image encoder, sized by big_vision-style variant strings ("S/8")."""
import re
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax import errors
from mmjax import nn as mnn

# width, depth, num_heads, mlp_dim. Ti..L as in ViT/big_vision; Nano and Micro are CPU-sized.
VIT_SIZES = {
    "Nano": (64, 2, 2, 256),
    "Micro": (128, 4, 4, 512),
    "Ti": (192, 12, 3, 768),
    "S": (384, 12, 6, 1536),
    "M": (512, 12, 8, 2048),
    "B": (768, 12, 12, 3072),
    "L": (1024, 24, 16, 4096),
}


def decode_variant(variant: str) -> dict[str, int]:
  """"S/8" → dict(width=384, depth=12, num_heads=6, mlp_dim=1536, patch_size=8)."""
  match = re.fullmatch(r"(\w+)/(\d+)", variant)
  if not match or match.group(1) not in VIT_SIZES:
    raise errors.ConfigError(f"ViT variant {variant!r} is not of the form '<size>/<patch>' with size in "
                             f"{list(VIT_SIZES)}, e.g. 'S/8'.")
  width, depth, num_heads, mlp_dim = VIT_SIZES[match.group(1)]
  return dict(width=width, depth=depth, num_heads=num_heads, mlp_dim=mlp_dim,
              patch_size=int(match.group(2)))


class ViT(nn.Module):
  """image: f32[B, H, W, channels] → (pooled [B, width], aux{'tokens': [B, N, width], 'mask': bool[B, N]});
  `channels` is 3 for RGB, 1 for grayscale such as MNIST. Every token is valid (the mask is all True).

  `variant` gives the defaults; any of width/depth/num_heads/mlp_dim/patch_size set to a
  value overrides it (e.g. the fixed bench_clip_s shape). `ln_pre`, `activation` and `epsilon` exist for
  imported checkpoints: CLIP normalises the embedded tokens before the first block ("pre_layrnorm") and brings
  its own MLP nonlinearity and LayerNorm epsilon.
  """
  variant: str = "Micro/8"
  width: int | None = None
  depth: int | None = None
  num_heads: int | None = None
  mlp_dim: int | None = None
  patch_size: int | None = None
  pool: str = "cls"
  posemb: str = "learn"  # "learn" or "sincos2d" (fixed; positions are meaningful from step 0).
  max_tokens: int = 1025
  channels: int = 3
  ln_pre: bool = False
  activation: str = "gelu"  # One of mmjax.nn.ACTIVATIONS.
  epsilon: float = 1e-6  # Of every LayerNorm.
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  remat: str = "none"

  def dims(self) -> dict[str, int]:
    dims = decode_variant(self.variant)
    for name in dims:
      if getattr(self, name) is not None:
        dims[name] = getattr(self, name)
    return dims

  @nn.compact
  def __call__(self, image: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    if image.ndim != 4 or image.shape[-1] != self.channels or not jnp.issubdtype(image.dtype, jnp.floating):
      raise errors.InputError(f"ViT expects images f32[B, H, W, {self.channels}] scaled to [-1, 1]; got {image.dtype}"
                              f"{list(image.shape)}. Decode images with mmjax.data.preprocess.decode_image, or set "
                              "the encoder's `channels` to the images' channel count.")
    dims = self.dims()
    x = mnn.PatchEmbed(dims["patch_size"], dims["width"], self.dtype, self.param_dtype,
                       name="patch_embed")(image.astype(self.dtype))
    return self._encode(self._add_sincos(x, image.shape[1:3], dims), dims)

  def _add_sincos(self, x: jax.Array, image_size: tuple[int, int], dims: dict[str, int]) -> jax.Array:
    """x [..., N, width] patch tokens + the fixed 2-D positions of their patches, with posemb "sincos2d"."""
    errors.check_choice(self.posemb, ("learn", "sincos2d"), "ViT posemb")
    if self.posemb != "sincos2d":
      return x
    grid = (image_size[0] // dims["patch_size"], image_size[1] // dims["patch_size"])
    return x + mnn.sincos_2d(*grid, dims["width"]).astype(x.dtype)

  def _encode(self, x: jax.Array, dims: dict[str, int]) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Embedded tokens [B, N, width] → [CLS] + learned positions (by the fields) → Transformer → (pooled, aux).
    Called from a compact `__call__` (ViT's, or a subclass's with another patch embedding, e.g. tubelets)."""
    if self.pool == "cls":
      cls = self.param("cls", mnn.partitioning.logical(nn.initializers.zeros, (None, None, "embed")),
                       (1, 1, dims["width"]), self.param_dtype)
      x = jnp.concatenate([jnp.broadcast_to(cls, (x.shape[0], 1, x.shape[-1])).astype(x.dtype), x], 1)
    if self.posemb == "learn":
      x = mnn.PositionEmbed(self.max_tokens, self.param_dtype, name="pos_embed")(x)
    if self.ln_pre:
      x = mnn.layer_norm("ln_pre", self.dtype, self.param_dtype, self.epsilon)(x)
    x = nn.with_logical_constraint(x, ("batch", "length", "embed"))
    x = mnn.Encoder(dims["depth"], dims["num_heads"], dims["mlp_dim"], self.dtype, self.param_dtype, self.remat,
                    activation=self.activation, epsilon=self.epsilon, name="encoder")(x)
    mask = jnp.ones(x.shape[:2], bool)
    return mnn.pool_tokens(x, mask, self.pool), {"tokens": x, "mask": mask}
