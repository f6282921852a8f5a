"""AV-Digits records → model inputs, in the input pipeline's workers."""
from __future__ import annotations

from typing import Any

import grain
import numpy as np

from mmjax.data import batch_reader
from mmjax.data import tokenizer as tokenizer_lib


class PreprocessAvDigits(grain.transforms.Map):
  """A record → {image, audio, text, label, image_digit, audio_digit, text_digit, *_heavy[, text_string]}.

  `image` f32[28, 28, 1] and `audio` f32[CLIP_SAMPLES] are scaled to [-1, 1]; `text` is i32[text_len]
  of character ids, eos and padding; the digits and heavy flags are int32 scalars (the flags let an
  evaluator split accuracy by which modalities were corrupted). `keep_text` adds the string as
  `text_string`, for evaluation only: strings cannot become jax.Arrays.
  """

  def __init__(self, tokenizer: tokenizer_lib.Tokenizer, *, text_len: int, keep_text: bool = False):
    self._tokens = tokenizer_lib.TokenRows(tokenizer)
    self._text_len = text_len
    self._keep_text = keep_text

  def map(self, element: dict[str, Any]) -> dict[str, Any]:
    return {key: value[0] for key, value in self.map_batch(batch_reader.collate([element])).items()}

  def map_batch(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`map` of every row of a batch of records (one array per field, mmjax.data.batch_reader.collate), the scaling
    done once over the batch: the training loader's form, which `map` is the one-row case of."""
    # tfds' numpy decoding gives Text as bytes.
    texts = [text.decode("utf-8") if isinstance(text, bytes) else text for text in batch["text"]]
    example = {
        "image": np.asarray(batch["image"], dtype=np.float32) / 127.5 - 1.0,
        "audio": np.asarray(batch["audio"], dtype=np.float32) / 32768.0,
        "text": self._tokens(texts, self._text_len),
        **{field: np.asarray(batch[field], dtype=np.int32)
           for field in ("label", "image_digit", "audio_digit", "text_digit", "image_heavy", "audio_heavy",
                         "text_heavy")},
    }
    if self._keep_text:
      example["text_string"] = np.array(texts, dtype=object)
    return example


class AugmentAvDigits(grain.transforms.RandomMap):
  """Training-time augmentation of a preprocessed example (after PreprocessAvDigits); the stored data and every
  evaluation are untouched. Grain seeds `rng` from the loader's seed and the example's position, so a resumed
  run sees the same augmented batches.

  image_shift: the image moves by up to this many pixels in each direction (padded with background, -1), as
    the classic MNIST augmentation; the held-out writers' digits sit a little differently in the frame.
  audio_stretch: the clip is played `f` times as fast, f uniform in [1 − s, 1 + s], about the window's centre
    (linear interpolation, no anti-aliasing): speed perturbation (Ko et al. 2015), which moves pitch and
    formants together, like a new speaker's vocal tract; the test voices are never heard in training.
  """

  def __init__(self, *, image_shift: int = 0, audio_stretch: float = 0.0):
    self._image_shift = image_shift
    self._audio_stretch = audio_stretch

  def random_map(self, element: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    element = dict(element)
    if self._image_shift:
      element["image"] = shift_image(element["image"], rng.integers(-self._image_shift, self._image_shift + 1, 2))
    if self._audio_stretch:
      element["audio"] = stretch_audio(element["audio"], rng.uniform(1 - self._audio_stretch,
                                                                     1 + self._audio_stretch))
    return element


def shift_image(image: np.ndarray, offset) -> np.ndarray:
  """f32[H, W, C] in [-1, 1] moved by `offset` (rows, columns; positive: down, right), background (-1) filling
  the uncovered edge."""
  height, width = image.shape[:2]
  rows, cols = int(offset[0]), int(offset[1])
  pad = max(abs(rows), abs(cols))
  padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), constant_values=-1.0)
  return padded[pad - rows:pad - rows + height, pad - cols:pad - cols + width]


def stretch_audio(audio: np.ndarray, speed: float) -> np.ndarray:
  """f32[T] played `speed` times as fast about its centre, still f32[T]: sample t reads the input at
  centre + (t − centre)·speed, linearly interpolated, and silence beyond its ends."""
  length = len(audio)
  centre = (length - 1) / 2
  positions = centre + (np.arange(length) - centre) * speed
  return np.interp(positions, np.arange(length), audio, left=0.0, right=0.0).astype(np.float32)
