"""The sentiment tfds builder: every example generated deterministically from its (split, index)."""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from mmjax.data import speech
from mmjax.data.generated import GeneratedBuilder
from mmjax.data.sentiment.sources import (
    CLIP_SAMPLES, CLIP_SECONDS, IMAGE_SIZE, LABEL_NAMES, SAMPLE_RATE, SCORE_SCALE, SUBSETS, TEST_VOICES,
    TRAIN_VOICES, Attitude, check_vocabulary, face_identity, load_lexicon, place_clip, prosody, render_face,
    sample_attitude, vocabulary)

_SPLIT_VOICES = {"train": TRAIN_VOICES, "test": TEST_VOICES}
_SPLIT_SEEDS = {"train": 1, "test": 2}
_BASE_SEED = 20261201
# Random streams of one example: its attitude and speaker, its voice, its face.
_ATTITUDE_STREAM, _VOICE_STREAM, _FACE_STREAM = range(3)


@dataclasses.dataclass
class SentimentConfig(tfds.core.BuilderConfig):
  """One variant of the sentiment corpus.

  sarcasm_prob: probability that a positive or negative example is sarcastic (its words say the opposite);
    with uniform classes, 2/3 · 0.3 = 20% of the examples are.
  pitch_per_score, speed_per_score: espeak pitch steps and words a minute per unit of score (−3..3);
    pitch_jitter, speed_jitter: their Gaussian spread within an attitude.
  mouth_per_score: rise of the mouth's corners per unit of score (fraction of the image); brow_per_score: brow
    tilt in radians per unit of score; mouth_jitter, brow_jitter: their spread; image_noise_std: pixel noise.

  The defaults were set with probes trained on 3,000 train examples and tested on the test split's unseen speakers
  (logistic regression on log-mel statistics for the voice, on pixels for the face); their accuracies are in
  docs/datasets.md.
  """
  num_train: int = 3_000
  num_test: int = 900
  sarcasm_prob: float = 0.3
  pitch_per_score: float = 8.0
  pitch_jitter: float = 6.0
  speed_per_score: float = 16.0
  speed_jitter: float = 14.0
  mouth_per_score: float = 0.035
  mouth_jitter: float = 0.03
  brow_per_score: float = 0.15
  brow_jitter: float = 0.15
  image_noise_std: float = 12.0


def plan_example(config: SentimentConfig, split: str, index: int) -> tuple[Attitude, speech.Voice]:
  """What example `index` of `split` says and how it is spoken: its attitude and its voice (speaker, speed,
  pitch). Cheap: the builder plans every example of a split, then synthesises their speech in parallel."""
  attitude = sample_attitude(_stream(split, index, _ATTITUDE_STREAM), config.sarcasm_prob, load_lexicon())
  rng = _stream(split, index, _VOICE_STREAM)
  voices = _SPLIT_VOICES[split]
  voice = prosody(attitude.score, voices[rng.integers(len(voices))], rng, pitch_per_score=config.pitch_per_score,
                  pitch_jitter=config.pitch_jitter, speed_per_score=config.speed_per_score,
                  speed_jitter=config.speed_jitter)
  return attitude, voice


def generate_example(config: SentimentConfig, split: str, index: int, attitude: Attitude, voice: speech.Voice,
                     clip: np.ndarray) -> dict[str, Any]:
  """Example `index` of `split` as tfds features, from its plan and its synthesised `clip` (f32 at SAMPLE_RATE)."""
  rng = _stream(split, index, _FACE_STREAM)
  image = render_face(attitude.score, face_identity(voice.variant), rng, mouth_per_score=config.mouth_per_score,
                      mouth_jitter=config.mouth_jitter, brow_per_score=config.brow_per_score,
                      brow_jitter=config.brow_jitter, noise_std=config.image_noise_std)
  audio = place_clip(clip, _stream(split, index, _VOICE_STREAM + 10))
  return dict(image=image, audio=audio, text=attitude.text, label=np.int32(attitude.label),
              score=np.float32(attitude.score), subset=np.int32(attitude.sarcastic),
              text_valence=np.float32(attitude.valence), voice=voice.variant, pitch=np.int32(voice.pitch),
              speed=np.int32(voice.speed))


def _stream(split: str, index: int, number: int) -> np.random.Generator:
  return np.random.default_rng([_BASE_SEED, _SPLIT_SEEDS[split], index, number])


class Sentiment(GeneratedBuilder, skip_registration=True):
  """tfds builder for the synthetic multimodal sentiment corpus (see mmjax.data.sentiment)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = [
      SentimentConfig(name="default", description="3,000 train / 900 test examples, 20% sarcastic."),
      SentimentConfig(name="small", description="Tests and smoke runs.", num_train=192, num_test=96),
  ]

  def _info(self) -> tfds.core.DatasetInfo:
    raw = tfds.features.Encoding.BYTES  # 1 byte a pixel and 2 a sample.
    integer = tfds.features.Scalar(dtype=np.int32)
    real = tfds.features.Scalar(dtype=np.float32)
    return tfds.core.DatasetInfo(
        builder=self,
        description=("Synthetic multimodal sentiment: a sentence of VADER-lexicon words, spoken by espeak-ng with "
                     "the speaker's attitude in pitch and speed, and a drawn face showing it; in the sarcastic "
                     "subset the words say the opposite of voice and face, which the label follows."),
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=(IMAGE_SIZE, IMAGE_SIZE, 1), dtype=np.uint8, encoding=raw),
            "audio": tfds.features.Tensor(shape=(CLIP_SAMPLES,), dtype=np.int16, encoding=raw),
            "text": tfds.features.Text(),
            "label": integer,  # LABEL_NAMES: the speaker's attitude.
            "score": real,  # −3..3, CMU-MOSI's scale.
            "subset": integer,  # SUBSETS: 0 sincere, 1 sarcastic.
            "text_valence": real,  # Mean VADER valence of the sentence's words (−4..4).
            "voice": tfds.features.Text(),
            "pitch": integer,
            "speed": integer,
        }),
        disable_shuffling=True,  # Examples are i.i.d. already; record i is example i.
        metadata=tfds.core.MetadataDict(
            label_names=list(LABEL_NAMES), subsets=list(SUBSETS), vocab=list(vocabulary()),
            sample_rate=SAMPLE_RATE, clip_seconds=CLIP_SECONDS, score_scale=SCORE_SCALE,
            train_voices=list(TRAIN_VOICES), test_voices=list(TEST_VOICES),
            sarcasm_prob=self.builder_config.sarcasm_prob),
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Iterator]:
    del dl_manager  # Nothing to download: every example is generated.
    speech.espeak_binary()  # Fail before any work when espeak-ng is missing.
    check_vocabulary(load_lexicon())
    sizes = {"train": self.builder_config.num_train, "test": self.builder_config.num_test}
    return {split: self._generate_examples(split, count) for split, count in sizes.items()}

  def _generate_examples(self, split: str, count: int) -> Iterator[tuple[int, dict[str, Any]]]:
    config = self.builder_config
    plans = [plan_example(config, split, index) for index in range(count)]
    clips = speech.speak_many([(attitude.text, voice) for attitude, voice in plans], SAMPLE_RATE,
                              max_samples=CLIP_SAMPLES)
    for index, ((attitude, voice), clip) in enumerate(zip(plans, clips)):
      yield index, generate_example(config, split, index, attitude, voice, clip)
