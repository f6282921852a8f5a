"""Offline speech synthesis with the espeak-ng program: text → f32 waveform, for the datasets that speak
(AV-Digits' number words, spoken captions and questions, the sentiment corpus' utterances).

espeak-ng is a formant synthesiser: robotic, but deterministic, fast (~10 ms a word) and shipped by every Linux
distribution, so datasets built from it are reproducible offline. Voices, speed and pitch vary the speaker.
"""
from __future__ import annotations

import concurrent.futures
import functools
import io
import os
import shutil
import subprocess
import wave
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from mmjax import errors

ESPEAK_RATE = 22_050  # Hz of espeak-ng's output.
TARGET_RMS = 0.1  # Every utterance is scaled to this RMS, so gains and SNRs are relative to the speech.


class Voice(NamedTuple):
  """How an utterance is spoken: an espeak-ng English variant (`espeak-ng --voices=variant`, e.g. "m3",
  "f2", "klatt"), words per minute and pitch on espeak's 0–99 scale."""
  variant: str
  speed: int
  pitch: int


def espeak_binary() -> str:
  """The path of espeak-ng, or a UserError that says how to install it."""
  path = shutil.which("espeak-ng")
  if path is None:
    raise errors.UserError(
        "This dataset synthesises its audio with the espeak-ng program, which is not on the PATH. Install it: "
        "`sudo apt-get install espeak-ng` (Debian/Ubuntu) or `brew install espeak-ng` (macOS).")
  return path


def speak(text: str, voice: Voice, sample_rate: int, *, binary: str | None = None,
          max_samples: int | None = None) -> np.ndarray:
  """`text` spoken by `voice`: f32[n] at `sample_rate`, leading/trailing silence trimmed, scaled to RMS
  TARGET_RMS. A clip longer than `max_samples` keeps its middle (callers size windows so this is rare)."""
  wav = subprocess.run([binary or espeak_binary(), "-v", f"en+{voice.variant}", "-s", str(voice.speed),
                        "-p", str(voice.pitch), "--stdout", text], capture_output=True, check=True).stdout
  with wave.open(io.BytesIO(wav)) as reader:
    if reader.getframerate() != ESPEAK_RATE or reader.getsampwidth() != 2 or reader.getnchannels() != 1:
      raise RuntimeError(f"espeak-ng gave {reader.getframerate()} Hz, {reader.getsampwidth()}-byte, "
                         f"{reader.getnchannels()}-channel audio; expected {ESPEAK_RATE} Hz 16-bit mono.")
    # Streamed to stdout, the header's frame count is a placeholder: read to the end.
    samples = np.frombuffer(reader.readframes(2**31 - 1), dtype=np.int16).astype(np.float64)
  from scipy import signal  # Here: only generating a dataset needs it, and it takes a second to import.

  divisor = np.gcd(sample_rate, ESPEAK_RATE)
  clip = signal.resample_poly(samples, sample_rate // divisor, ESPEAK_RATE // divisor)
  loud = np.flatnonzero(np.abs(clip) > 0.01 * np.abs(clip).max())
  clip = clip[loud[0]:loud[-1] + 1]
  if max_samples is not None and len(clip) > max_samples:
    start = (len(clip) - max_samples) // 2
    clip = clip[start:start + max_samples]
  return (clip * (TARGET_RMS / np.sqrt(np.mean(clip**2)))).astype(np.float32)


def speak_many(requests: Sequence[tuple[str, Voice]], sample_rate: int, *,
               max_samples: int | None = None) -> list[np.ndarray]:
  """`speak` for every (text, voice), in order. Each clip is its own espeak-ng process; a thread pool keeps
  every core busy."""
  binary = espeak_binary()
  job = functools.partial(_speak_request, sample_rate=sample_rate, binary=binary, max_samples=max_samples)
  with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
    return list(pool.map(job, requests))


def _speak_request(request: tuple[str, Voice], *, sample_rate: int, binary: str,
                   max_samples: int | None) -> np.ndarray:
  text, voice = request
  return speak(text, voice, sample_rate, binary=binary, max_samples=max_samples)
