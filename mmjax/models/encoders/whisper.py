"""Whisper's audio encoder (Radford et al. 2022), shaped to import OpenAI's checkpoints (mmjax.pretrained.whisper).

waveform f32[B, T] at 16 kHz → Whisper's log-mel (mmjax.nn.spectrogram.whisper_log_mel) → conv1d k3 → GELU →
conv1d k3 stride 2 → GELU → + sinusoidal positions → pre-LayerNorm Transformer → final LayerNorm: one token per
20 ms, 1500 for the 30 s window. GELU is the exact (erf) one and LayerNorms use epsilon 1e-5, as in Whisper.

Whisper keeps its position table fixed; here it is a param (`pos_embed`, 1500 rows) that starts as Whisper's
sinusoids and is imported from a checkpoint as stored (float16-rounded: computing it afresh instead moved the
outputs by up to 7.7e-3, against 2.5e-5 with the stored table). Fine-tuning may move it, as any learned position.
"""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mmjax import errors
from mmjax import nn as mnn
from mmjax.nn import spectrogram as spec

# width, depth, num_heads (mlp_dim = 4·width) of OpenAI's English and multilingual models up to medium (80 mel
# bins; large-v3 has 128), and a CPU-sized "nano" for smoke tests, which no checkpoint has.
WHISPER_SIZES = {
    "nano": (64, 2, 2),
    "tiny": (384, 4, 6),
    "base": (512, 6, 8),
    "small": (768, 12, 12),
    "medium": (1024, 24, 16),
}
WHISPER_EPSILON = 1e-5
MAX_POSITIONS = 1500  # Tokens of the 30 s window: the position table's rows.


def sinusoids(length: int, channels: int, max_timescale: float = 10_000.0) -> np.ndarray:
  """Whisper's position table f32[length, channels]: [sin | cos] of position · timescale, with channels / 2
  timescales geometric from 1 to 1/max_timescale, computed in float64."""
  if channels % 2:
    raise errors.ConfigError(f"Whisper's sinusoidal positions need an even width; got {channels}.")
  increment = np.log(max_timescale) / (channels // 2 - 1)
  angles = np.arange(length)[:, None] * np.exp(-increment * np.arange(channels // 2))[None, :]
  return np.concatenate([np.sin(angles), np.cos(angles)], axis=1).astype(np.float32)


def _sinusoid_init(key: jax.Array, shape: tuple[int, int], dtype: Any = jnp.float32) -> jax.Array:
  del key
  return jnp.asarray(sinusoids(*shape), dtype)


class WhisperEncoder(nn.Module):
  """waveform: f32[B, T] at 16 kHz → (pooled [B, width], aux{'tokens': [B, N, width], 'mask': bool[B, N],
  'frames': [B, N, width], 'spectrogram': f32[B, frames, num_mel_bins]}), N = frames / 2, every token valid.
  The tokens are already one per time step (20 ms), in order, so they are also `frames`, what a CTC head scores.

  `window_seconds` is the front end's window: 30 (3000 frames, 1500 tokens) is what Whisper was trained on and
  what the equality test checks. A shorter window cuts the attention's cost quadratically and the rest linearly
  (3 s: 150 tokens, a few % of the compute), with the position table sliced to it; a pretrained encoder
  then no longer sees the zero-padded frames it was trained with after short audio, so its outputs drift from
  the reference's (tests/pretrained/test_whisper_import.py measures by how much) and are best fine-tuned.
  Audio longer than the window is cut. `pool` averages the tokens ("mean") for tasks that need one vector.
  """
  sample_rate: int = spec.WHISPER_SAMPLE_RATE  # Of the input waveform; set from the dataset's metadata.
  variant: str = "tiny"
  num_mel_bins: int = 80
  window_seconds: float = spec.WHISPER_WINDOW_SECONDS
  pool: str = "mean"
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  remat: str = "none"

  def dims(self) -> tuple[int, int, int]:
    """(width, depth, num_heads) of the variant."""
    return errors.lookup(WHISPER_SIZES, self.variant, "Whisper variant")

  def num_frames(self) -> int:
    frames = round(self.window_seconds * spec.WHISPER_FRAMES_PER_SECOND)
    if not 2 <= frames <= spec.WHISPER_WINDOW_SECONDS * spec.WHISPER_FRAMES_PER_SECOND:
      raise errors.ConfigError(f"Whisper window_seconds={self.window_seconds} must be between 0.02 and "
                               f"{spec.WHISPER_WINDOW_SECONDS} (the window Whisper was trained on).")
    return frames

  def __call__(self, waveform: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    if self.sample_rate != spec.WHISPER_SAMPLE_RATE:
      raise errors.ConfigError(f"The Whisper encoder's front end takes {spec.WHISPER_SAMPLE_RATE} Hz audio, but the "
                               f"data is at {self.sample_rate} Hz; give the dataset a sample rate of "
                               f"{spec.WHISPER_SAMPLE_RATE}.")
    if waveform.ndim != 2:
      raise errors.InputError(f"Whisper encoder expects waveforms f32[B, T]; got {waveform.dtype}"
                              f"{list(waveform.shape)}.")
    log_mel = spec.whisper_log_mel(waveform, num_mel_bins=self.num_mel_bins, num_frames=self.num_frames())
    pooled, aux = self.encode_log_mel(log_mel)
    return pooled, {**aux, "spectrogram": log_mel}

  @nn.compact
  def encode_log_mel(self, log_mel: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Whisper log-mel features f32[B, frames, num_mel_bins] (`whisper_log_mel`) → (pooled, aux{'tokens',
    'mask', 'frames'}): the encoder without its front end, for features computed elsewhere (e.g. once per clip)."""
    errors.check_choice(self.pool, mnn.POOLINGS, "Whisper pool")
    width, depth, num_heads = self.dims()
    x = log_mel.astype(self.dtype)
    for name, stride in (("conv1", 1), ("conv2", 2)):
      x = nn.Conv(width, (3,), strides=(stride,), padding=((1, 1),), dtype=self.dtype,
                  param_dtype=self.param_dtype, name=name,
                  kernel_init=mnn.logical(mnn.DEFAULT_KERNEL_INIT, (None, None, "embed")),
                  bias_init=mnn.logical(nn.initializers.zeros, ("embed",)))(x)
      x = nn.gelu(x, approximate=False)
    x = mnn.PositionEmbed(MAX_POSITIONS, self.param_dtype, _sinusoid_init, name="pos_embed")(x)
    x = nn.with_logical_constraint(x, ("batch", "length", "embed"))
    x = mnn.Encoder(depth, num_heads, 4 * width, self.dtype, self.param_dtype, self.remat, activation="gelu_erf",
                    epsilon=WHISPER_EPSILON, name="encoder")(x)
    mask = jnp.ones(x.shape[:2], bool)
    return mnn.pool_tokens(x, mask, self.pool), {"tokens": x, "mask": mask, "frames": x}
