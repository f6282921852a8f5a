"""Video encoders: clips f32[B, T, H, W, C] in [-1, 1] → (pooled [B, width], aux{'tokens': [B, N, width],
'mask': bool[B, N]}), like every encoder, so a fusion or a decoder takes them as it takes an image's tokens.

Two ViViT designs (Arnab et al. 2021), both built from the ViT here (its variants, patching, positions and
Transformer):
- `FactorisedVideoEncoder` (ViViT's "factorised encoder"): a ViT reads every frame on its own — the frames are
  folded into the batch axis, so the spatial part shards over `batch` like an image tower's and costs T images —
  and a temporal Transformer reads the T per-frame vectors. Tokens: one per frame.
- `TubeletEncoder` (ViViT's "tubelet embedding"): t × p × p × C tubes, each embedded by one linear map, then one
  Transformer over all (T/t)·(H/p)·(W/p) tokens, so attention mixes space and time from the first layer.
"""
from typing import Any

import einops
import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax import errors
from mmjax import nn as mnn
from mmjax.models.encoders.vit import ViT


def _check_video(video: jax.Array, channels: int, encoder: str) -> None:
  if video.ndim != 5 or video.shape[-1] != channels or not jnp.issubdtype(video.dtype, jnp.floating):
    raise errors.InputError(f"{encoder} expects clips f32[B, T, H, W, {channels}] scaled to [-1, 1]; got "
                            f"{video.dtype}{list(video.shape)}. Feed it the `video` field of a video dataset "
                            "(e.g. moving_shapes).")


class FactorisedVideoEncoder(nn.Module):
  """Per-frame ViT (`variant`, `pool`, `posemb` as ViT's; `depth` overrides the variant's) → the frames' pooled
  vectors [B, T, width] + learned
  time positions (up to `max_frames`) → a temporal Transformer of `temporal_depth` blocks (the ViT's heads and
  MLP width) → tokens [B, T, width], pooled by `temporal_pool` ("mean" or "last")."""
  variant: str = "Nano/16"
  depth: int | None = None
  pool: str = "cls"
  posemb: str = "sincos2d"
  temporal_depth: int = 2
  temporal_pool: str = "mean"
  max_frames: int = 64
  channels: int = 3
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  remat: str = "none"

  @nn.compact
  def __call__(self, video: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    _check_video(video, self.channels, "FactorisedVideoEncoder")
    errors.check_choice(self.temporal_pool, ("mean", "last"), "temporal_pool")
    batch, frames = video.shape[:2]
    frame_encoder = ViT(self.variant, depth=self.depth, pool=self.pool, posemb=self.posemb, channels=self.channels,
                        dtype=self.dtype, param_dtype=self.param_dtype, remat=self.remat, name="frame_encoder")
    images = nn.with_logical_constraint(einops.rearrange(video, "b t h w c -> (b t) h w c"),
                                        ("batch", None, None, None))
    per_frame, _ = frame_encoder(images)
    x = nn.with_logical_constraint(per_frame.reshape(batch, frames, -1), ("batch", "length", "embed"))
    x = mnn.PositionEmbed(self.max_frames, self.param_dtype, name="time_embed")(x)
    dims = frame_encoder.dims()
    x = mnn.Encoder(self.temporal_depth, dims["num_heads"], dims["mlp_dim"], self.dtype, self.param_dtype,
                    self.remat, name="temporal_encoder")(x)
    mask = jnp.ones(x.shape[:2], bool)
    return mnn.pool_tokens(x, mask, self.temporal_pool), {"tokens": x, "mask": mask}


class TubeletEncoder(ViT):
  """A ViT over tubelets of `tubelet_frames` frames × the variant's patch: each tube is embedded by one linear
  map (the frames of a tube stacked on the channel axis, then ViT's patch embedding), the fixed 2-D positions of
  its patch added with posemb "sincos2d" and a learned position of its time slot (up to `max_frames` / t);
  with posemb "learn" one learned table covers every token instead. Then ViT's [CLS], Transformer and pooling.
  T must be a multiple of `tubelet_frames`. Tokens: [CLS] (pool "cls") and the (T/t)·(H/p)·(W/p) tubes, in
  time-major order."""
  variant: str = "Nano/16"
  posemb: str = "sincos2d"
  tubelet_frames: int = 2
  max_frames: int = 64

  @nn.compact
  def __call__(self, video: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    _check_video(video, self.channels, "TubeletEncoder")
    batch, frames = video.shape[:2]
    if frames % self.tubelet_frames:
      raise errors.ConfigError(f"Clips of {frames} frames do not split into tubelets of {self.tubelet_frames} "
                               "frames; set the encoder's `tubelet_frames` to a divisor of the clip length.")
    slots = frames // self.tubelet_frames
    dims = self.dims()
    # A t×p×p×C tube is a p×p patch of the t frames stacked on channels: one strided conv embeds them all.
    stacked = einops.rearrange(video, "b (s t) h w c -> (b s) h w (t c)", t=self.tubelet_frames)
    x = mnn.PatchEmbed(dims["patch_size"], dims["width"], self.dtype, self.param_dtype,
                       name="patch_embed")(stacked.astype(self.dtype))
    x = self._add_sincos(x, video.shape[2:4], dims).reshape(batch, slots, -1, dims["width"])
    if self.posemb == "sincos2d":
      time_embed = mnn.PositionEmbed(self.max_frames // self.tubelet_frames, self.param_dtype, name="time_embed")
      x = einops.rearrange(time_embed(einops.rearrange(x, "b s n d -> b n s d")), "b n s d -> b s n d")
    return self._encode(x.reshape(batch, -1, dims["width"]), dims)
