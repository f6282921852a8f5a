"""The Spoken Shapes tfds builders: every example generated deterministically from its (task, split, index)."""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from mmjax.data import shapes, speech
from mmjax.data.generated import GeneratedBuilder
from mmjax.data.spoken_shapes.sources import (
    CHARS, SAMPLE_RATE, SOURCES, SPLIT_VOICES, TEST_VOICES, TRAIN_VOICES, caption_text, digit_string, draw_voice,
    shapes_image_size, stored_clip)

_BASE_SEED = 20261201
_TASK_SEEDS = {"speech": 1, "vqa": 2}
_SPLIT_SEEDS = {"train": 1, "test": 2, "heldout": 3}
_CHUNK = 256  # Utterances synthesised at a time (speech.speak_many keeps every core busy on each chunk).


@dataclasses.dataclass
class SpokenShapesConfig(tfds.core.BuilderConfig):
  """One variant of a Spoken Shapes dataset.

  num_train, num_test, num_heldout: split sizes. `test` and `heldout` are spoken by voices train never has
  (mmjax.data.av_digits.TEST_VOICES); `heldout` also holds Shapes' held-out colour–shape pairs.
  snr_db: white noise this many dB below the speech over every clip; None: clean.
  speeds, pitches: espeak-ng words per minute and pitch (0–99), each drawn uniformly per utterance from the range.
  max_seconds: the longest clip (speech and its margins); the model's input window.
  digits_fraction, digit_lengths: the speech task's share of digit strings and their number of words.
  """
  num_train: int = 3_000
  num_test: int = 400
  num_heldout: int = 400
  snr_db: float | None = 20.0
  speeds: tuple[int, int] = (150, 210)
  pitches: tuple[int, int] = (30, 70)
  max_seconds: float = 6.0
  digits_fraction: float = 0.25
  digit_lengths: tuple[int, int] = (2, 5)


class _SpokenShapesBuilder(GeneratedBuilder, skip_registration=True):
  """What both tasks share: splits, voices, synthesis in chunks, the stored clip. A subclass names its `TASK`
  and gives `_features` and `_example` (index → the text to speak and the other fields)."""

  TASK = ""
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}

  def _features(self) -> dict[str, tfds.features.FeatureConnector]:
    raise NotImplementedError

  def _example(self, split: str, index: int, rng: np.random.Generator) -> tuple[str, dict[str, Any]]:
    raise NotImplementedError

  def _info(self) -> tfds.core.DatasetInfo:
    config = self.builder_config
    return tfds.core.DatasetInfo(
        builder=self,
        description=self.__doc__,
        features=tfds.features.FeaturesDict({
            # Raw int16 bytes of any length up to max_seconds (2 bytes a sample; tfds' default int64 list takes 3).
            "audio": tfds.features.Tensor(shape=(None,), dtype=np.int16, encoding=tfds.features.Encoding.BYTES),
            "voice": tfds.features.Text(),
            "speed": tfds.features.Scalar(dtype=np.int32),
            "pitch": tfds.features.Scalar(dtype=np.int32),
            **self._features(),
        }),
        # Examples are i.i.d. already; record i of a split is then the example of index i.
        disable_shuffling=True,
        metadata=tfds.core.MetadataDict(
            task=self.TASK, sample_rate=SAMPLE_RATE, max_samples=self.max_samples, snr_db=config.snr_db,
            chars=list(CHARS), sources=list(SOURCES), answers=list(shapes.ANSWERS),
            question_types=list(shapes.QUESTION_TYPES), train_voices=list(TRAIN_VOICES),
            test_voices=list(TEST_VOICES)),
    )

  @property
  def max_samples(self) -> int:
    return int(round(self.builder_config.max_seconds * SAMPLE_RATE))

  def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Iterator]:
    del dl_manager  # Nothing to download: every example is generated.
    speech.espeak_binary()  # Fail before any work when espeak-ng is missing.
    config = self.builder_config
    sizes = {"train": config.num_train, "test": config.num_test, "heldout": config.num_heldout}
    return {split: self._generate_examples(split, count) for split, count in sizes.items() if count}

  def _generate_examples(self, split: str, count: int) -> Iterator[tuple[int, dict[str, Any]]]:
    config = self.builder_config
    for start in range(0, count, _CHUNK):
      indices = range(start, min(start + _CHUNK, count))
      rngs = [np.random.default_rng([_BASE_SEED, _TASK_SEEDS[self.TASK], _SPLIT_SEEDS[split], index])
              for index in indices]
      planned = [self._example(split, index, rng) for index, rng in zip(indices, rngs)]
      voices = [draw_voice(SPLIT_VOICES[split], rng, config.speeds, config.pitches) for rng in rngs]
      clips = speech.speak_many([(text, voice) for (text, _), voice in zip(planned, voices)], SAMPLE_RATE)
      for index, rng, (_, fields), voice, clip in zip(indices, rngs, planned, voices, clips):
        audio = stored_clip(clip, rng, max_samples=self.max_samples, snr_db=config.snr_db)
        yield index, dict(fields, audio=audio, voice=voice.variant, speed=np.int32(voice.speed),
                          pitch=np.int32(voice.pitch))


class SpokenShapes(_SpokenShapesBuilder, skip_registration=True):
  """Speech to text: a Shapes caption or a string of number words, spoken by espeak-ng (16 kHz). `text` is the
  transcript; `source` says which (0 caption, 1 digits)."""

  TASK = "speech"
  BUILDER_CONFIGS = [
      SpokenShapesConfig(name="default", description="Clean-ish speech: white noise 20 dB below it."),
      SpokenShapesConfig(name="noisy", description="White noise 5 dB below the speech.", snr_db=5.0),
      SpokenShapesConfig(name="small", description="Tests and smoke runs.", num_train=32, num_test=8,
                         num_heldout=8),
  ]

  def _features(self) -> dict[str, tfds.features.FeatureConnector]:
    return {"text": tfds.features.Text(), "source": tfds.features.Scalar(dtype=np.int32)}

  def _example(self, split: str, index: int, rng: np.random.Generator) -> tuple[str, dict[str, Any]]:
    config = self.builder_config
    if rng.random() < config.digits_fraction:
      text, source = digit_string(rng, config.digit_lengths), "digits"
    else:
      text, source = caption_text(split, index), "caption"
    return text, {"text": text, "source": np.int32(SOURCES.index(source))}


class SpokenVqa(_SpokenShapesBuilder, skip_registration=True):
  """Spoken VQA: a Shapes scene (the Shapes dataset's example of the same split and index), its question spoken
  by espeak-ng (16 kHz) and written, and the one-word answer."""

  TASK = "vqa"
  BUILDER_CONFIGS = [
      SpokenShapesConfig(name="default", description="White noise 20 dB below the speech."),
      SpokenShapesConfig(name="small", description="Tests and smoke runs.", num_train=32, num_test=8,
                         num_heldout=8),
  ]

  def _features(self) -> dict[str, tfds.features.FeatureConnector]:
    size = shapes_image_size()
    return {"image": tfds.features.Image(shape=(size, size, 3), encoding_format="png"),
            "question": tfds.features.Text(), "answer": tfds.features.Text(),
            "question_type": tfds.features.Scalar(dtype=np.int32)}

  def _example(self, split: str, index: int, rng: np.random.Generator) -> tuple[str, dict[str, Any]]:
    del rng  # The scene, question and answer are Shapes' own.
    scene = shapes.generate_example(split, index, image_size=shapes_image_size())
    fields = {key: scene[key] for key in ("image", "question", "answer", "question_type")}
    return scene["question"], fields
