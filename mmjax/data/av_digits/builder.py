"""The AV-Digits tfds builder: every example generated deterministically from its (task, split, index)."""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from mmjax import errors
from mmjax.data import speech
from mmjax.data.generated import GeneratedBuilder
from mmjax.data.av_digits.sources import (
    CHARS, CLIP_SAMPLES, CLIP_SECONDS, IMAGE_SIZE, LABEL_NAMES, LANGUAGES, NUMBER_WORDS, PITCHES, SAMPLE_RATE, SPEEDS,
    TASKS, TEST_VOICES, TRAIN_VOICES, ClipKey, DigitImages, corrupt_image, corrupt_text, image_pools,
    load_digit_images, mix_audio, mnist_source, sample_digits, synthesise_bank)

_SPLIT_VOICES = {"train": TRAIN_VOICES, "test": TEST_VOICES}
_TASK_SEEDS = {"redundant": 1, "synergy": 2}
_SPLIT_SEEDS = {"train": 1, "test": 2}
_BASE_SEED = 20240917
# Random streams of one example: which digits and which modalities are heavy, then each modality's own.
_DIGIT_STREAM, _IMAGE_STREAM, _AUDIO_STREAM, _TEXT_STREAM = range(4)



@dataclasses.dataclass
class AvDigitsConfig(tfds.core.BuilderConfig):
  """One AV-Digits variant. Noise settings are (light, heavy) pairs.

  task: "redundant" or "synergy" (see the module docstring).
  heavy_prob: probability that a modality of an example is heavy, independently per modality.
  image_noise_std: Gaussian pixel noise std, in 0–255 pixel units.
  image_erase_size: side of a square (pixels) set to background at a random place; heavy (22)
    covers all but a sliver of MNIST's central 20×20 digit box.
  audio_talker_gain_db: level of a competing talker (another digit's clip) relative to the
    target; heavy is louder than the target.
  audio_snr_db: target-to-white-noise ratio.
  text_typo_rate, text_drop_rate: per-character typo and drop probabilities (`corrupt_text`).
  speeds, pitches: espeak-ng settings of the clip bank (× 10 digits × the split's voices).

  The defaults were set with simple probes trained on 3,000 train examples and tested on the
  test split (an MLP on pixels; an MLP on cepstral features of the audio; logistic regression
  on character 1–3-grams): light ≈ 88% / 96% / 98% and heavy ≈ 14% / 20% / 22% for image /
  audio / text (chance is 10%). Stronger models will do better on both, heavy included.
  """
  task: str = "redundant"
  num_train: int = 6_000
  num_test: int = 1_000
  heavy_prob: float = 0.45
  image_noise_std: tuple[float, float] = (20.0, 100.0)
  image_erase_size: tuple[int, int] = (6, 22)
  audio_talker_gain_db: tuple[float, float] = (-20.0, 10.0)
  audio_snr_db: tuple[float, float] = (20.0, -10.0)
  text_typo_rate: tuple[float, float] = (0.1, 0.9)
  text_drop_rate: tuple[float, float] = (0.0, 0.8)
  speeds: tuple[int, ...] = SPEEDS
  pitches: tuple[int, ...] = PITCHES


def generate_example(config: AvDigitsConfig, split: str, index: int, images: DigitImages,
                     pools: Mapping[str, Sequence[np.ndarray]], bank: Mapping[ClipKey, np.ndarray]) -> dict[str, Any]:
  """Example `index` of `split` as tfds features; depends on nothing else than its arguments."""
  def stream(number: int) -> np.random.Generator:
    return np.random.default_rng([_BASE_SEED, _TASK_SEEDS[config.task], _SPLIT_SEEDS[split], index, number])

  rng = stream(_DIGIT_STREAM)
  digits = sample_digits(config.task, rng)
  image_heavy, audio_heavy, text_heavy = (bool(h) for h in rng.random(3) < config.heavy_prob)

  rng = stream(_IMAGE_STREAM)
  candidates = pools[split][digits.image]
  image_index = int(candidates[rng.integers(len(candidates))])
  image = corrupt_image(images.images[image_index], rng, noise_std=config.image_noise_std[image_heavy],
                        erase_size=config.image_erase_size[image_heavy])

  rng = stream(_AUDIO_STREAM)
  voices = _SPLIT_VOICES[split]

  def clip_key(digit: int) -> ClipKey:
    return (digit, voices[rng.integers(len(voices))], config.speeds[rng.integers(len(config.speeds))],
            config.pitches[rng.integers(len(config.pitches))])

  # The competing talker says another digit, in any voice, speed and pitch of the split.
  key, talker_key = clip_key(digits.audio), clip_key((digits.audio + int(rng.integers(1, 10))) % 10)
  audio = mix_audio(bank[key], bank[talker_key], rng, talker_gain_db=config.audio_talker_gain_db[audio_heavy],
                    snr_db=config.audio_snr_db[audio_heavy])

  rng = stream(_TEXT_STREAM)
  language = LANGUAGES[rng.integers(len(LANGUAGES))]
  text = corrupt_text(NUMBER_WORDS[language][digits.text], rng, typo_rate=config.text_typo_rate[text_heavy],
                      drop_rate=config.text_drop_rate[text_heavy])
  return dict(image=image, audio=audio, text=text, label=np.int32(digits.label),
              image_digit=np.int32(digits.image), audio_digit=np.int32(digits.audio),
              text_digit=np.int32(digits.text), image_heavy=image_heavy, audio_heavy=audio_heavy,
              text_heavy=text_heavy, image_index=np.int32(image_index), voice=key[1], language=language)


class AvDigits(GeneratedBuilder, skip_registration=True):
  """tfds builder for AV-Digits (see the module docstring)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = [
      AvDigitsConfig(name="redundant", description="Every modality shows the label; each is heavy w.p. 0.45."),
      AvDigitsConfig(name="synergy", description="Label = (image digit + spoken digit) mod 10; text is a "
                     "distractor; light noise only.", task="synergy", heavy_prob=0.0),
      AvDigitsConfig(name="redundant_small", description="Tests and smoke runs.", num_train=256, num_test=128,
                     speeds=(160,), pitches=(50,)),
      AvDigitsConfig(name="synergy_small", description="Tests and smoke runs.", task="synergy", heavy_prob=0.0,
                     num_train=256, num_test=128, speeds=(160,), pitches=(50,)),
  ]

  def _info(self) -> tfds.core.DatasetInfo:
    config = self.builder_config
    digit = tfds.features.Scalar(dtype=np.int32)
    flag = tfds.features.Scalar(dtype=np.bool_)
    # Raw bytes: 1 byte a pixel and 2 a sample, where tfds' default int64 lists take up to 3.
    raw = tfds.features.Encoding.BYTES
    return tfds.core.DatasetInfo(
        builder=self,
        description=("Digits 0-9 as a handwritten MNIST image, an espeak-ng spoken word (8 kHz) and a typed "
                     "number word in six languages with typos; each modality lightly or heavily corrupted."),
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=(IMAGE_SIZE, IMAGE_SIZE, 1), dtype=np.uint8, encoding=raw),
            "audio": tfds.features.Tensor(shape=(CLIP_SAMPLES,), dtype=np.int16, encoding=raw),
            "text": tfds.features.Text(),
            "label": digit,
            "image_digit": digit,
            "audio_digit": digit,
            "text_digit": digit,
            "image_heavy": flag,
            "audio_heavy": flag,
            "text_heavy": flag,
            "image_index": tfds.features.Scalar(dtype=np.int32),  # Row of the image in the MNIST source.
            "voice": tfds.features.Text(),
            "language": tfds.features.Text(),
        }),
        # Examples are i.i.d. already; record i of a split is then `generate_example(..., split, i, ...)`.
        disable_shuffling=True,
        metadata=tfds.core.MetadataDict(
            task=config.task, heavy_prob=config.heavy_prob, sample_rate=SAMPLE_RATE, clip_seconds=CLIP_SECONDS,
            label_names=list(LABEL_NAMES), chars=list(CHARS), train_voices=list(TRAIN_VOICES),
            test_voices=list(TEST_VOICES), languages=list(LANGUAGES),
            number_words={language: list(words) for language, words in NUMBER_WORDS.items()},
            mnist_source=mnist_source()),
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Iterator]:
    del dl_manager  # Nothing to download: every example is generated.
    speech.espeak_binary()  # Fail before any work when espeak-ng is missing.
    errors.check_choice(self.builder_config.task, TASKS, "AV-Digits task")
    sizes = {"train": self.builder_config.num_train, "test": self.builder_config.num_test}
    return {split: self._generate_examples(split, count) for split, count in sizes.items()}

  def _generate_examples(self, split: str, count: int) -> Iterator[tuple[int, dict[str, Any]]]:
    config = self.builder_config
    images = load_digit_images()
    pools = image_pools(images.labels)
    bank = synthesise_bank(_SPLIT_VOICES[split], config.speeds, config.pitches)
    for index in range(count):
      yield index, generate_example(config, split, index, images, pools, bank)
