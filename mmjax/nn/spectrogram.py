"""Log-mel spectrogram front ends: waveform f32[B, T] → f32[B, frames, num_mel_bins].

`log_mel_spectrogram` follows tf.signal's conventions (`frame` without padding, periodic Hann window,
`linear_to_mel_weight_matrix`), for models trained here. `whisper_log_mel` is Whisper's own front end (Slaney
mel filters, log10, dynamic range clamp, 30 s window), which a pretrained Whisper encoder needs to mean what it
meant in training. Both share `power_spectrogram`.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np

from mmjax import errors


def hz_to_mel(frequency_hz: np.ndarray | float) -> np.ndarray:
  """The HTK mel scale, mel = 2595·log10(1 + f/700) (tf.signal writes it 1127·ln(1 + f/700))."""
  return 2595.0 * np.log10(1.0 + np.asarray(frequency_hz, np.float64) / 700.0)


def mel_filterbank(num_mel_bins: int, fft_size: int, sample_rate: int, lower_hz: float,
                   upper_hz: float) -> np.ndarray:
  """Triangular mel filters f32[fft_size // 2 + 1, num_mel_bins], as tf.signal.linear_to_mel_weight_matrix.

  Band edges are `num_mel_bins + 2` points evenly spaced on the mel scale from `lower_hz` to
  `upper_hz`; filter m rises linearly *in mel* from edge m to 1 at edge m+1 and falls to 0 at
  edge m+2. Filters are not area-normalised (unlike librosa's "slaney" norm): a tone at a filter's
  centre gets weight 1 whatever the band's width. The DC row (bin 0) is zeroed, as in tf.signal,
  so a constant offset in the waveform contributes nothing.

  Built in float64 with numpy: it is a constant of the static arguments, folded into the jitted
  program at trace time.
  """
  nyquist = sample_rate / 2
  if num_mel_bins < 1 or fft_size < 2:
    raise errors.ConfigError(f"mel_filterbank needs num_mel_bins ≥ 1 and fft_size ≥ 2; got {num_mel_bins} and "
                             f"{fft_size}.")
  if not 0 <= lower_hz < upper_hz <= nyquist:
    raise errors.ConfigError(f"Mel band [{lower_hz}, {upper_hz}] Hz must satisfy 0 ≤ lower_hz < upper_hz ≤ "
                             f"sample_rate / 2 = {nyquist}; change lower_hz/upper_hz.")
  bin_mels = hz_to_mel(np.linspace(0.0, nyquist, fft_size // 2 + 1))[1:, None]  # Without DC.
  edges = np.linspace(hz_to_mel(lower_hz), hz_to_mel(upper_hz), num_mel_bins + 2)
  lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
  rising = (bin_mels - lower) / (centre - lower)
  falling = (upper - bin_mels) / (upper - centre)
  weights = np.maximum(0.0, np.minimum(rising, falling))
  return np.pad(weights, ((1, 0), (0, 0))).astype(np.float32)


def frame_geometry(sample_rate: int, window_ms: float, hop_ms: float) -> tuple[int, int]:
  """(window, hop) in samples: round(sample_rate · ms / 1000) each."""
  window, hop = round(sample_rate * window_ms / 1000), round(sample_rate * hop_ms / 1000)
  if window < 1 or hop < 1:
    raise errors.ConfigError(f"window_ms={window_ms} and hop_ms={hop_ms} at sample_rate={sample_rate} give "
                             f"{window} and {hop} samples; both must be at least 1 sample.")
  return window, hop


def num_frames(num_samples: int, window: int, hop: int) -> int:
  """Frames of a waveform of `num_samples`, without padding: 1 + (T − window) // hop."""
  return 1 + (num_samples - window) // hop


def log_mel_spectrogram(waveform: jax.Array, *, sample_rate: int, window_ms: float = 25.0, hop_ms: float = 10.0,
                        num_mel_bins: int = 40, fft_size: int | None = None, lower_hz: float = 20.0,
                        upper_hz: float | None = None, log_offset: float = 1e-6) -> jax.Array:
  """waveform: f[B, T] → log-mel power f32[B, frames, num_mel_bins].

  Frames of `window = round(sample_rate·window_ms/1000)` samples start every
  `hop = round(sample_rate·hop_ms/1000)` samples; the waveform is not padded, so
  frames = 1 + (T − window) // hop and trailing samples that do not fill a frame are dropped
  (8 kHz, 1 s, 25/10 ms → 98 frames). Each frame is multiplied by a periodic Hann window,
  zero-padded to `fft_size` (default: the next power of two ≥ window), and its power |rfft|²
  projected on `mel_filterbank` (lower_hz..upper_hz, default upper: sample_rate / 2);
  the result is log(mel power + log_offset), the offset bounding silence at log(log_offset).
  Computed in float32 whatever the waveform's dtype: log power spans a range bfloat16 would round away.
  """
  if waveform.ndim != 2 or not jnp.issubdtype(waveform.dtype, jnp.floating):
    raise errors.InputError(f"log_mel_spectrogram expects a float waveform [B, T]; got {waveform.dtype}"
                            f"{list(waveform.shape)}.")
  window, hop = frame_geometry(sample_rate, window_ms, hop_ms)
  if waveform.shape[1] < window:
    raise errors.InputError(f"Waveform of {waveform.shape[1]} samples is shorter than one window of {window} samples "
                            f"({window_ms} ms at {sample_rate} Hz); pad the audio or shorten window_ms.")
  fft_size = fft_size or 2 ** math.ceil(math.log2(window))
  if fft_size < window:
    raise errors.ConfigError(f"fft_size={fft_size} is shorter than the window of {window} samples; "
                             "leave fft_size unset or raise it.")
  filters = mel_filterbank(num_mel_bins, fft_size, sample_rate, lower_hz,
                           sample_rate / 2 if upper_hz is None else upper_hz)
  mel = jnp.einsum("bfk,km->bfm", power_spectrogram(waveform, window, hop, fft_size), filters,
                   precision=jax.lax.Precision.HIGHEST)
  return jnp.log(mel + log_offset)


def power_spectrogram(waveform: jax.Array, window: int, hop: int, fft_size: int) -> jax.Array:
  """waveform: f[B, T] → |rfft|² f32[B, 1 + (T − window) // hop, fft_size // 2 + 1] of unpadded frames of
  `window` samples every `hop`, each multiplied by a periodic Hann window and zero-padded to `fft_size`."""
  starts = hop * jnp.arange(num_frames(waveform.shape[1], window, hop))
  frames = jnp.asarray(waveform, jnp.float32)[:, starts[:, None] + jnp.arange(window)]  # [B, frames, window]
  periodic_hann = jnp.hanning(window + 1)[:-1].astype(jnp.float32)
  spectrum = jnp.fft.rfft(frames * periodic_hann, n=fft_size)
  return jnp.square(spectrum.real) + jnp.square(spectrum.imag)


def standardize(spectrogram: jax.Array, eps: float = 1e-5) -> jax.Array:
  """Per-utterance normalisation: x: f32[B, frames, mels] → (x − mean) / (std + eps), moments over
  (frames, mels) of each example.

  A gain g shifts a log-mel spectrogram by 2·log g, so this makes features independent of
  loudness without dataset statistics (AST instead subtracts fixed AudioSet constants, which fit
  only Kaldi fbank features of AudioSet's level). Silence (a constant spectrogram) maps to 0.
  """
  mean = spectrogram.mean(axis=(1, 2), keepdims=True)
  std = spectrogram.std(axis=(1, 2), keepdims=True)
  return (spectrogram - mean) / (std + eps)


# Whisper's front end (openai/whisper audio.py; faster_whisper/feature_extractor.py, which ctranslate2's Whisper
# is fed by): 16 kHz audio, 25 ms (400-sample) frames every 10 ms (160 samples), 30 s windows of 3000 frames.
WHISPER_SAMPLE_RATE = 16_000
WHISPER_FFT_SIZE = 400
WHISPER_HOP = 160
WHISPER_FRAMES_PER_SECOND = WHISPER_SAMPLE_RATE // WHISPER_HOP
WHISPER_WINDOW_SECONDS = 30


def slaney_hz_to_mel(frequency_hz: np.ndarray | float) -> np.ndarray:
  """The Slaney (Auditory Toolbox, librosa's default) mel scale: linear below 1 kHz (3 mel per 200 Hz), then
  logarithmic (27 mel per factor 6.4)."""
  frequency_hz = np.asarray(frequency_hz, np.float64)
  linear = frequency_hz * 3.0 / 200.0
  logarithmic = 15.0 + np.log(np.maximum(frequency_hz, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
  return np.where(frequency_hz >= 1000.0, logarithmic, linear)


def slaney_mel_to_hz(mel: np.ndarray) -> np.ndarray:
  """The inverse of `slaney_hz_to_mel`."""
  mel = np.asarray(mel, np.float64)
  return np.where(mel >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0)), mel * 200.0 / 3.0)


def slaney_mel_filterbank(num_mel_bins: int, fft_size: int, sample_rate: int, lower_hz: float = 0.0,
                          upper_hz: float | None = None) -> np.ndarray:
  """Triangular mel filters f32[fft_size // 2 + 1, num_mel_bins] as librosa.filters.mel(htk=False,
  norm="slaney") builds them, and Whisper with them: band edges evenly spaced on the Slaney mel scale, each
  triangle linear *in Hz* between its edges, scaled by 2 / (its width in Hz) so each band has about the same
  area (unlike `mel_filterbank`'s peak-1 triangles). Built in float64, rounded to float32 as Whisper stores them.
  """
  upper_hz = sample_rate / 2 if upper_hz is None else upper_hz
  if num_mel_bins < 1 or fft_size < 2 or not 0 <= lower_hz < upper_hz <= sample_rate / 2:
    raise errors.ConfigError(f"slaney_mel_filterbank needs num_mel_bins ≥ 1, fft_size ≥ 2 and 0 ≤ lower_hz < "
                             f"upper_hz ≤ sample_rate / 2; got {num_mel_bins}, {fft_size}, [{lower_hz}, "
                             f"{upper_hz}] at {sample_rate} Hz.")
  edges = slaney_mel_to_hz(np.linspace(slaney_hz_to_mel(lower_hz), slaney_hz_to_mel(upper_hz), num_mel_bins + 2))
  bins = np.fft.rfftfreq(fft_size, 1.0 / sample_rate)
  widths = np.diff(edges)
  rising = (bins[None] - edges[:-2, None]) / widths[:-1, None]
  falling = (edges[2:, None] - bins[None]) / widths[1:, None]
  weights = np.maximum(0.0, np.minimum(rising, falling)) * (2.0 / (edges[2:] - edges[:-2]))[:, None]
  return weights.T.astype(np.float32)


def whisper_log_mel(waveform: jax.Array, *, num_mel_bins: int = 80,
                    num_frames: int = WHISPER_WINDOW_SECONDS * WHISPER_FRAMES_PER_SECOND) -> jax.Array:
  """waveform: f[B, T] at 16 kHz → Whisper's log-mel features f32[B, num_frames, num_mel_bins], exactly as
  faster-whisper computes them for one clip of T samples and feeds them to the encoder:

  160 zeros appended; 200 samples reflected at each end (torch.stft's center=True); periodic-Hann frames of
  400 samples every 160, |rfft|² with the stft's last frame dropped; Slaney mel filters (0–8 kHz); log10 of
  max(power, 1e-10); clamped from below at (the clip's largest value − 8), i.e. an 80 dB dynamic range; then
  (x + 4) / 4. The first T // 160 frames (the content, faster-whisper's `content_frames`) are kept, and padded
  with 0 (or cut) to `num_frames` (3000 = 30 s, the window Whisper was trained on).

  The clamp's maximum is taken over each clip's whole waveform, so zeros a batch pads a clip with count as
  silence (as openai/whisper treats them), not as absent. Computed in float32 whatever the waveform's dtype.
  """
  if waveform.ndim != 2 or not jnp.issubdtype(waveform.dtype, jnp.floating):
    raise errors.InputError(f"whisper_log_mel expects a float waveform [B, T]; got {waveform.dtype}"
                            f"{list(waveform.shape)}.")
  samples = waveform.shape[1]
  if samples <= WHISPER_FFT_SIZE // 2:
    raise errors.InputError(f"Waveform of {samples} samples is too short for Whisper's front end: it needs more "
                            f"than {WHISPER_FFT_SIZE // 2} samples (12.5 ms at 16 kHz); pad the audio.")
  padded = jnp.pad(jnp.asarray(waveform, jnp.float32), ((0, 0), (0, WHISPER_HOP)))
  padded = jnp.pad(padded, ((0, 0), (WHISPER_FFT_SIZE // 2,) * 2), mode="reflect")
  power = power_spectrogram(padded, WHISPER_FFT_SIZE, WHISPER_HOP, WHISPER_FFT_SIZE)[:, :-1]
  filters = slaney_mel_filterbank(num_mel_bins, WHISPER_FFT_SIZE, WHISPER_SAMPLE_RATE)
  mel = jnp.einsum("bfk,km->bfm", power, filters, precision=jax.lax.Precision.HIGHEST)
  log_mel = jnp.log10(jnp.maximum(mel, 1e-10))
  log_mel = jnp.maximum(log_mel, log_mel.max(axis=(1, 2), keepdims=True) - 8.0)
  log_mel = ((log_mel + 4.0) / 4.0)[:, :min(samples // WHISPER_HOP, num_frames)]
  return jnp.pad(log_mel, ((0, 0), (0, num_frames - log_mel.shape[1]), (0, 0)))
