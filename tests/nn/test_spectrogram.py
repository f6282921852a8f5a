"""The log-mel front end against an independent numpy reference, on pure tones, and its errors."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmjax import errors
from mmjax.nn import spectrogram as spec

SAMPLE_RATE = 8000


def _mel(hz):
  return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)


def _hz(mel):
  return 700.0 * (10.0 ** (np.asarray(mel) / 2595.0) - 1.0)


def _reference_filters(num_mel_bins, fft_size, sample_rate, lower_hz, upper_hz):
  """Triangles in mel, one bin and one filter at a time; DC gets no weight."""
  edges = np.linspace(_mel(lower_hz), _mel(upper_hz), num_mel_bins + 2)
  filters = np.zeros((fft_size // 2 + 1, num_mel_bins))
  for k in range(1, fft_size // 2 + 1):
    bin_mel = _mel(k * sample_rate / fft_size)
    for m in range(num_mel_bins):
      left, centre, right = edges[m:m + 3]
      if left < bin_mel <= centre:
        filters[k, m] = (bin_mel - left) / (centre - left)
      elif centre < bin_mel < right:
        filters[k, m] = (right - bin_mel) / (right - centre)
  return filters


def _reference_log_mel(waveform, sample_rate, window_ms=25.0, hop_ms=10.0, num_mel_bins=40, lower_hz=20.0,
                       log_offset=1e-6):
  window = round(sample_rate * window_ms / 1000)
  hop = round(sample_rate * hop_ms / 1000)
  fft_size = 1
  while fft_size < window:
    fft_size *= 2
  hann = np.hanning(window + 1)[:-1]  # Periodic: the symmetric window of N + 1 points without its last.
  filters = _reference_filters(num_mel_bins, fft_size, sample_rate, lower_hz, sample_rate / 2)
  out = []
  for example in np.asarray(waveform, np.float64):
    frames = []
    start = 0
    while start + window <= len(example):
      power = np.abs(np.fft.rfft(example[start:start + window] * hann, n=fft_size)) ** 2
      frames.append(np.log(power @ filters + log_offset))
      start += hop
    out.append(frames)
  return np.array(out)


def _tone(hz, seconds=1.0, sample_rate=SAMPLE_RATE, phase=0.0):
  t = np.arange(int(seconds * sample_rate)) / sample_rate
  return np.sin(2 * np.pi * hz * t + phase).astype(np.float32)


def test_filterbank_matches_reference_and_zeroes_dc():
  filters = spec.mel_filterbank(40, 256, SAMPLE_RATE, 20.0, 4000.0)
  assert filters.shape == (129, 40) and filters.dtype == np.float32
  np.testing.assert_allclose(filters, _reference_filters(40, 256, SAMPLE_RATE, 20.0, 4000.0), atol=1e-6)
  assert not filters[0].any()


def test_matches_numpy_reference():
  rng = np.random.default_rng(0)
  waveform = np.stack([_tone(440.0) + 0.1 * rng.standard_normal(SAMPLE_RATE).astype(np.float32),
                       0.3 * rng.standard_normal(SAMPLE_RATE).astype(np.float32)])
  got = spec.log_mel_spectrogram(jnp.asarray(waveform), sample_rate=SAMPLE_RATE)
  np.testing.assert_allclose(got, _reference_log_mel(waveform, SAMPLE_RATE), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("tone_hz", [1000.0, 2500.0])
def test_pure_tone_peaks_in_nearest_mel_bin(tone_hz):
  log_mel = spec.log_mel_spectrogram(jnp.asarray(_tone(tone_hz))[None], sample_rate=SAMPLE_RATE)
  centres_hz = _hz(np.linspace(_mel(20.0), _mel(SAMPLE_RATE / 2), 42)[1:-1])
  loudest = int(np.argmax(np.exp(np.asarray(log_mel[0])).mean(0)))
  assert loudest == int(np.argmin(np.abs(centres_hz - tone_hz)))


@pytest.mark.parametrize("sample_rate,num_samples,window_ms,hop_ms,frames", [
    (8000, 8000, 25.0, 10.0, 98),  # The lead's clips: window 200, hop 80.
    (16000, 4000, 25.0, 10.0, 23),  # Window 400, hop 160: 1 + 3600 // 160.
    (8000, 200, 25.0, 10.0, 1),  # Exactly one window.
    (8000, 1000, 32.0, 16.0, 1 + (1000 - 256) // 128),  # Window already a power of two.
])
def test_shape_and_frame_count(sample_rate, num_samples, window_ms, hop_ms, frames):
  log_mel = jax.eval_shape(functools.partial(spec.log_mel_spectrogram, sample_rate=sample_rate, window_ms=window_ms,
                                             hop_ms=hop_ms, num_mel_bins=24), jnp.zeros((3, num_samples)))
  assert log_mel.shape == (3, frames, 24) and log_mel.dtype == jnp.float32
  window, hop = spec.frame_geometry(sample_rate, window_ms, hop_ms)
  assert spec.num_frames(num_samples, window, hop) == frames


def test_jit_matches_eager_and_computes_in_float32():
  waveform = jnp.asarray(_tone(700.0, seconds=0.5))[None]
  log_mel = functools.partial(spec.log_mel_spectrogram, sample_rate=SAMPLE_RATE, num_mel_bins=32)
  np.testing.assert_allclose(jax.jit(log_mel)(waveform), log_mel(waveform), rtol=1e-4)
  from_bf16 = jax.jit(log_mel)(waveform.astype(jnp.bfloat16))
  assert from_bf16.dtype == jnp.float32 and np.isfinite(from_bf16).all()


def test_standardize_removes_gain():
  """A gain shifts the log-mel by a constant (while far above log_offset); standardising removes it."""
  waveform = jnp.asarray(_tone(1200.0, seconds=0.5) + 0.05 * np.random.default_rng(1).standard_normal(4000))[None]
  loud, quiet = (spec.log_mel_spectrogram(gain * waveform, sample_rate=SAMPLE_RATE) for gain in (1.0, 0.25))
  np.testing.assert_allclose(spec.standardize(loud), spec.standardize(quiet), atol=1e-3)
  standardized = spec.standardize(loud)
  np.testing.assert_allclose(standardized.mean(), 0, atol=1e-5)
  np.testing.assert_allclose(standardized.std(), 1, atol=1e-3)


@pytest.mark.parametrize("waveform,kwargs,error,message", [
    (jnp.zeros((2, 199)), {}, errors.InputError, r"199 samples is shorter than one window of 200 samples"),
    (jnp.zeros((8000,)), {}, errors.InputError, r"expects a float waveform \[B, T\]; got float32\[8000\]"),
    (jnp.zeros((2, 8000), jnp.int16), {}, errors.InputError, r"got int16\[2, 8000\]"),
    (jnp.zeros((2, 8000)), {"upper_hz": 5000.0}, errors.ConfigError, r"sample_rate / 2 = 4000"),
    (jnp.zeros((2, 8000)), {"fft_size": 128}, errors.ConfigError, r"fft_size=128 is shorter than the window of 200"),
    (jnp.zeros((2, 8000)), {"hop_ms": 0.01}, errors.ConfigError, r"both must be at least 1 sample"),
])
def test_bad_inputs_are_named(waveform, kwargs, error, message):
  with pytest.raises(error, match=message):
    spec.log_mel_spectrogram(waveform, sample_rate=SAMPLE_RATE, **kwargs)
