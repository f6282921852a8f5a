"""What Spoken Shapes says and how it sounds: digit strings, voices, and the stored clip (placed, noised, int16).

The scenes, captions and questions are Shapes' own (mmjax.data.shapes.generate_example); the number words and the
voices split into train and test are AV-Digits' (mmjax.data.av_digits), so both datasets hold out the same
speakers.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mmjax import errors
from mmjax.data import shapes, speech
from mmjax.data.av_digits import LABEL_NAMES, TEST_VOICES, TRAIN_VOICES

SAMPLE_RATE = 16_000  # Hz: what Whisper's front end (16 kHz, 80-bin log-mel) reads, so one dataset serves both.
DIGIT_WORDS = LABEL_NAMES  # "zero" … "nine".
SOURCES = ("caption", "digits")  # What an utterance of the speech task says.
SPLIT_VOICES = {"train": TRAIN_VOICES, "test": TEST_VOICES, "heldout": TEST_VOICES}
# Every word and every character a transcript, question or answer can hold: the Shapes words (with "?") and the
# number words, and the space between them.
WORDS = tuple(sorted(set(shapes.VOCAB) | set(DIGIT_WORDS)))
CHARS = tuple(sorted(set(" ".join(WORDS))))
_MAX_LEAD_SECONDS = 0.25  # Silence (noise only) before and after the speech, at most.
_PEAK = 0.9  # Clips are scaled to this peak before int16 rounding: never clipped.


def digit_string(rng: np.random.Generator, lengths: tuple[int, int]) -> str:
  """A string of `lengths[0]`–`lengths[1]` number words, e.g. "seven one one four" (a phone-number-like
  sequence: each word independent and uniform)."""
  count = int(rng.integers(lengths[0], lengths[1] + 1))
  return " ".join(DIGIT_WORDS[digit] for digit in rng.integers(10, size=count))


def draw_voice(voices: Sequence[str], rng: np.random.Generator, speeds: tuple[int, int],
               pitches: tuple[int, int]) -> speech.Voice:
  """A voice of `voices` at a speed (words per minute) and pitch drawn uniformly from the closed ranges."""
  return speech.Voice(voices[int(rng.integers(len(voices)))], int(rng.integers(speeds[0], speeds[1] + 1)),
                      int(rng.integers(pitches[0], pitches[1] + 1)))


def stored_clip(clip: np.ndarray, rng: np.random.Generator, *, max_samples: int, snr_db: float | None) -> np.ndarray:
  """An espeak clip f32[n] (silence trimmed, RMS speech.TARGET_RMS) → i16[m], m ≤ max_samples: up to
  0.25 s of silence before and after it (less where the window is short), white noise `snr_db` below the
  speech over all of it (None: none), scaled to a fixed peak."""
  if len(clip) > max_samples:
    raise errors.UserError(f"An utterance lasts {len(clip) / SAMPLE_RATE:.2f} s, longer than the dataset's "
                           f"max_seconds={max_samples / SAMPLE_RATE}: raise max_seconds or the speed range of the "
                           "builder config.")
  room = min(max_samples - len(clip), 2 * int(_MAX_LEAD_SECONDS * SAMPLE_RATE))
  lead, tail = (int(rng.integers(room // 2 + 1)) for _ in range(2))
  audio = np.pad(clip.astype(np.float64), (lead, tail))
  if snr_db is not None:
    audio += rng.normal(0.0, speech.TARGET_RMS * 10 ** (-snr_db / 20), size=len(audio))
  return np.rint(audio * (_PEAK * 32767 / np.abs(audio).max())).astype(np.int16)


def caption_text(split: str, index: int) -> str:
  """The caption of Shapes' example `index` of `split` (the same scene as the Shapes dataset's)."""
  return shapes.generate_example(split, index, image_size=shapes_image_size())["caption"]


def shapes_image_size() -> int:
  """The rendered scenes' size: that of the Shapes dataset's default variant."""
  return shapes.ShapesConfig.image_size
