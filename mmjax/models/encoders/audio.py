"""Audio encoders: waveform f32[B, T] → log-mel spectrogram → tokens, by a Transformer (AST) or a ConvNet.

Both share one call signature and the front-end fields, so a config switches them with one key:
  __call__(waveform: f32[B, T]) → (pooled [B, width],
                                   aux{'tokens': [B, N, width], 'mask': bool[B, N], 'spectrogram': f32[B, frames, M],
                                       'frames': [B, T', width]})
`aux['spectrogram']` is the raw log-mel (before normalisation), for plots and probes. `aux['frames']` is one vector
per time step, in order (the tokens of a time step averaged over frequency): what a CTC head scores
(mmjax.models.ctc). Every audio encoder gives it; one whose tokens are already one per time step gives them.
"""
from typing import Any

import einops
import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax import errors
from mmjax import nn as mnn
from mmjax.models.encoders.cnn import ConvNet
from mmjax.nn import spectrogram as spec


class LogMelFrontEnd(nn.Module):
  """The fields and front end both encoders share (no params).

  waveform: f[B, T] at `sample_rate` → (log-mel f32[B, frames, num_mel_bins],
  its per-utterance standardisation `spectrogram.standardize`). Frames of `window_ms` every `hop_ms`,
  unpadded: frames = 1 + (T − window) // hop, 98 for 1 s at 8 kHz with the defaults.
  """
  sample_rate: int  # Of the input waveform; set from the dataset's metadata when a run is built.
  window_ms: float = 25.0
  hop_ms: float = 10.0
  num_mel_bins: int = 40

  def log_mel(self, waveform: jax.Array) -> tuple[jax.Array, jax.Array]:
    if waveform.ndim != 2:
      raise errors.InputError(f"{type(self).__name__} expects waveforms f32[B, T]; got {waveform.dtype}"
                              f"{list(waveform.shape)}.")
    log_mel = spec.log_mel_spectrogram(waveform, sample_rate=self.sample_rate, window_ms=self.window_ms,
                                       hop_ms=self.hop_ms, num_mel_bins=self.num_mel_bins)
    return log_mel, spec.standardize(log_mel)


class AudioSpectrogramTransformer(LogMelFrontEnd):
  """AST (Gong et al. 2021), trained from scratch: non-overlapping patch_time × patch_freq patches of the
  standardised log-mel → + fixed 2-D sin-cos positions (time × frequency) → optional class token → Encoder.

  Frames beyond the last whole patch are cropped (98 frames, patch_time 8 → 96); num_mel_bins must be
  a multiple of patch_freq. Patches are embedded by space-to-depth and mnn.PatchEmbed with a 1×1
  patch, the same linear map as a patch_time × patch_freq strided conv but for rectangular patches.
  N = (frames // patch_time) · (num_mel_bins // patch_freq), plus 1 with pool="cls".
  """
  width: int = 64
  depth: int = 2
  num_heads: int = 2
  mlp_dim: int = 256
  patch_time: int = 8
  patch_freq: int = 8
  pool: str = "mean"  # "mean" over the patch tokens, or "cls": a learned class token, as in AST.
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  remat: str = "none"

  @nn.compact
  def __call__(self, waveform: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    errors.check_choice(self.pool, ("cls", "mean"), "AST pool")
    if self.num_mel_bins % self.patch_freq:
      raise errors.ConfigError(f"num_mel_bins={self.num_mel_bins} is not divisible by patch_freq={self.patch_freq}; "
                               "change one of them.")
    log_mel, features = self.log_mel(waveform)
    time_patches = features.shape[1] // self.patch_time
    if time_patches == 0:
      raise errors.InputError(f"{features.shape[1]} spectrogram frames are fewer than patch_time={self.patch_time}; "
                              "use longer audio or a smaller patch_time.")
    features = features[:, :time_patches * self.patch_time]
    patches = einops.rearrange(features, "b (t pt) (f pf) -> b t f (pt pf)", pt=self.patch_time, pf=self.patch_freq)
    x = mnn.PatchEmbed(1, self.width, self.dtype, self.param_dtype, name="patch_embed")(patches.astype(self.dtype))
    x = x + mnn.sincos_2d(time_patches, self.num_mel_bins // self.patch_freq, self.width).astype(x.dtype)
    if self.pool == "cls":
      cls = self.param("cls", mnn.partitioning.logical(nn.initializers.zeros, (None, None, "embed")),
                       (1, 1, self.width), self.param_dtype)
      x = jnp.concatenate([jnp.broadcast_to(cls, (x.shape[0], 1, self.width)).astype(x.dtype), x], 1)
    x = nn.with_logical_constraint(x, ("batch", "length", "embed"))
    x = mnn.Encoder(self.depth, self.num_heads, self.mlp_dim, self.dtype, self.param_dtype, self.remat,
                    name="encoder")(x)
    mask = jnp.ones(x.shape[:2], bool)
    patch_tokens = x[:, 1:] if self.pool == "cls" else x
    frames = patch_tokens.reshape(x.shape[0], time_patches, -1, self.width).mean(2)
    return mnn.pool_tokens(x, mask, self.pool), {"tokens": x, "mask": mask, "spectrogram": log_mel, "frames": frames}


class AudioCNN(LogMelFrontEnd):
  """The standardised log-mel as a 1-channel image f32[B, frames, mels, 1] → ConvNet (see mmjax.models.cnn).

  Tokens are the final feature map's (time, frequency) positions; with the defaults 98×40 → 13×5 = 65.
  The stem's stride 2 (20 ms × 2 mel bins) makes a batch ~4× cheaper than full resolution, whose first
  stage dominates the cost.
  """
  widths: tuple[int, ...] = (16, 32, 64)
  blocks_per_stage: int = 1
  width: int = 64
  stem_stride: int = 2
  norm_groups: int = 8
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  remat: str = "none"

  @nn.compact
  def __call__(self, waveform: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    log_mel, features = self.log_mel(waveform)
    pooled, aux = ConvNet(self.widths, self.blocks_per_stage, self.width, self.stem_stride, self.norm_groups,
                          self.dtype, self.param_dtype, self.remat, name="convnet")(features[..., None])
    # The tokens are the final map's (time, frequency) positions, row-major. SAME convolutions round each
    # downsampling up: the map is ⌈mels / stem_stride⌉ wide, then halved (rounding up) by every stage but the first.
    freq_positions = -(-self.num_mel_bins // self.stem_stride)
    for _ in self.widths[1:]:
      freq_positions = -(-freq_positions // 2)
    tokens = aux["tokens"]
    frames = tokens.reshape(tokens.shape[0], -1, freq_positions, tokens.shape[-1]).mean(2)
    return pooled, {**aux, "spectrogram": log_mel, "frames": frames}


