"""Sentiment sources: the VADER lexicon and the sentences built from it, the voice's prosody and the rendered
face, each a pure function of its arguments (see mmjax.data.sentiment for the dataset as a whole)."""
from __future__ import annotations

import functools
import importlib.util
import os
import zlib
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw

from mmjax import errors
from mmjax.data import speech

LABEL_NAMES = ("negative", "neutral", "positive")  # Class id = attitude polarity + 1.
SUBSETS = ("sincere", "sarcastic")
SCORE_SCALE = 0.75  # VADER's valences (−4..4) → CMU-MOSI's sentiment scale (−3..3).

# The vocabulary. Every polar word is in VADER's lexicon with its sign; the neutral adjectives, the nouns and the
# templates' words are not, so they count 0 (VADER's rule for a word it does not list). The weakest polar words
# are |valence| 1.3 ("cool", "boring"): a gap to the neutral class that voice and face can show.
POSITIVE_WORDS = ("good", "great", "brilliant", "wonderful", "excellent", "amazing", "fantastic", "lovely", "nice",
                  "pleasant", "enjoyable", "perfect", "beautiful", "clever", "charming", "superb", "delightful",
                  "awesome", "cool", "fresh")
NEGATIVE_WORDS = ("bad", "terrible", "awful", "horrible", "boring", "dull", "stupid", "ugly", "weak", "poor",
                  "dreadful", "disappointing", "annoying", "pathetic", "lame", "messy", "painful", "nasty", "sad",
                  "depressing")
NEUTRAL_WORDS = ("long", "short", "new", "old", "slow", "loud", "quiet", "modern", "ordinary", "simple", "typical",
                 "french", "familiar", "recent", "complex", "british", "silent", "early", "late", "normal")
NOUNS = ("movie", "film", "plot", "acting", "ending", "story", "soundtrack", "dialogue", "cast", "script", "show",
         "book", "music", "scenery", "sequel", "camera")
# {a}, {b}: adjectives of the utterance's word polarity; {noun}: a noun.
TEMPLATES = ("the {noun} was {a}", "what a {a} {noun}", "this {noun} is {a}", "the {noun} was {a} and {b}",
             "i found the {noun} {a}", "a {a} and {b} {noun}")
_WORD_POOLS = {-1: NEGATIVE_WORDS, 0: NEUTRAL_WORDS, 1: POSITIVE_WORDS}

# espeak-ng English variants; the test speakers are never heard (nor their faces seen) in training. No
# "whisper": it has no pitch to carry an attitude.
TRAIN_VOICES = ("m1", "m2", "m3", "m4", "m5", "m6", "f1", "f2", "f3", "croak", "klatt")
TEST_VOICES = ("m7", "f4", "f5", "klatt3")
SAMPLE_RATE = 8000
CLIP_SECONDS = 3.0  # 99% of the utterances are shorter than 2.8 s; a longer one keeps its middle.
CLIP_SAMPLES = int(SAMPLE_RATE * CLIP_SECONDS)
IMAGE_SIZE = 32
_RENDER_SCALE = 4  # Faces are drawn at 4× and downsampled: smooth curves at 32×32.


# ---------------------------------------------------------------------------------------------
# The lexicon and the sentences.


def lexicon_path() -> str:
  """vader_lexicon.txt inside the installed vaderSentiment package (read directly: its analyser is not used)."""
  spec = importlib.util.find_spec("vaderSentiment")
  if spec is None or not spec.submodule_search_locations:
    raise errors.UserError("The sentiment dataset reads its word valences from VADER's lexicon, and the "
                           "vaderSentiment package is not installed. Run `pip install vadersentiment==3.3.2`.")
  return os.path.join(spec.submodule_search_locations[0], "vader_lexicon.txt")


@functools.cache
def load_lexicon() -> dict[str, float]:
  """VADER's lexicon: {token: mean valence of its 10 human ratings, −4..4}. Each line is
  `token<TAB>mean<TAB>std<TAB>[ratings]`."""
  with open(lexicon_path(), encoding="utf-8") as f:
    rows = [line.rstrip("\n").split("\t") for line in f if line.strip()]
  return {row[0]: float(row[1]) for row in rows}


def vocabulary() -> tuple[str, ...]:
  """Every word a sentence can hold, in a fixed order (the word tokenizer's vocabulary)."""
  template_words = [word for template in TEMPLATES for word in template.split() if not word.startswith("{")]
  return tuple(dict.fromkeys([*template_words, *NOUNS, *NEUTRAL_WORDS, *POSITIVE_WORDS, *NEGATIVE_WORDS]))


def check_vocabulary(lexicon: dict[str, float]) -> None:
  """Raises unless every polar word is in the lexicon with its sign and no other word is in it: what makes a
  sentence's valence (`text_valence`) the mean valence of its polar words."""
  wrong = [w for sign, pool in ((1, POSITIVE_WORDS), (-1, NEGATIVE_WORDS)) for w in pool
           if np.sign(lexicon.get(w, 0.0)) != sign]
  unscored = set(POSITIVE_WORDS) | set(NEGATIVE_WORDS)
  listed = [w for w in vocabulary() if w not in unscored and w in lexicon]
  if wrong or listed:
    raise errors.InputError(f"The VADER lexicon at {lexicon_path()} disagrees with the sentiment vocabulary: polar "
                            f"words missing or of the other sign {wrong}, neutral words it scores {listed}. "
                            "Install vadersentiment==3.3.2, the version the vocabulary was chosen with.")


def text_valence(text: str, lexicon: dict[str, float]) -> float:
  """The text's valence on VADER's −4..4 scale: the mean valence of its words that the lexicon lists
  (0 when none does). No boosters, negations or punctuation rules: the templates have none."""
  scores = [lexicon[word] for word in text.split() if word in lexicon]
  return float(np.mean(scores)) if scores else 0.0


def compose_sentence(polarity: int, rng: np.random.Generator) -> str:
  """A sentence of a random template whose adjectives all have `polarity` (−1, 0, 1), e.g. "what a dull film"."""
  template = TEMPLATES[rng.integers(len(TEMPLATES))]
  a, b = rng.choice(_WORD_POOLS[polarity], size=2, replace=False)
  return template.format(noun=NOUNS[rng.integers(len(NOUNS))], a=a, b=b)


class Attitude(NamedTuple):
  """What an example says and means: the label (class id), whether the words say the opposite, the sentence,
  its text valence (VADER scale) and the sentiment score (CMU-MOSI scale) that voice and face express."""
  label: int
  sarcastic: bool
  text: str
  valence: float
  score: float


def sample_attitude(rng: np.random.Generator, sarcasm_prob: float, lexicon: dict[str, float]) -> Attitude:
  """A uniform attitude (negative / neutral / positive); a polar one is sarcastic with `sarcasm_prob`: its words
  have the opposite polarity. score = SCORE_SCALE · valence, negated when sarcastic (the speaker means the mirror
  of the words: "what a brilliant film" said in scorn is as negative as "brilliant" is positive)."""
  label = int(rng.integers(len(LABEL_NAMES)))
  polarity = label - 1
  sarcastic = bool(polarity != 0 and rng.random() < sarcasm_prob)
  text = compose_sentence(-polarity if sarcastic else polarity, rng)
  valence = text_valence(text, lexicon)
  return Attitude(label, sarcastic, text, valence, SCORE_SCALE * valence * (-1.0 if sarcastic else 1.0))


# ---------------------------------------------------------------------------------------------
# The voice.


def prosody(score: float, variant: str, rng: np.random.Generator, *, pitch_per_score: float, pitch_jitter: float,
            speed_per_score: float, speed_jitter: float) -> speech.Voice:
  """How the attitude sounds: espeak pitch 50 and 160 words a minute at score 0, higher and faster for positive,
  lower and slower for negative, each with Gaussian jitter. The pitch is relative to the voice's own (a female
  voice's "low" can be above a male voice's "high"), the speed is not."""
  pitch = np.clip(50 + pitch_per_score * score + rng.normal(0, pitch_jitter), 5, 95)
  speed = np.clip(160 + speed_per_score * score + rng.normal(0, speed_jitter), 100, 230)
  return speech.Voice(variant, int(round(speed)), int(round(pitch)))


def place_clip(clip: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """f32[n] (n ≤ CLIP_SAMPLES) → i16[CLIP_SAMPLES]: the utterance at a random start in a silent window, at
  espeak's level (speech.TARGET_RMS) plus faint white noise (40 dB below it)."""
  window = rng.normal(0.0, speech.TARGET_RMS * 0.01, size=CLIP_SAMPLES).astype(np.float32)
  start = int(rng.integers(CLIP_SAMPLES - len(clip) + 1))
  window[start:start + len(clip)] += clip
  return np.rint(np.clip(window * 32767 / 8, -32768, 32767)).astype(np.int16)  # ±8: 80× the RMS never clips.


# ---------------------------------------------------------------------------------------------
# The face.


class FaceIdentity(NamedTuple):
  """A speaker's face: grey levels of skin and background, head half-width and half-height, eye spacing and
  height (fractions of the image); fixed per voice, so test speakers also have unseen faces."""
  skin: int
  background: int
  half_width: float
  half_height: float
  eye_spacing: float
  eye_height: float


def face_identity(variant: str) -> FaceIdentity:
  """The face of the speaker with espeak voice `variant` (seeded by its name: the same on every run)."""
  rng = np.random.default_rng([zlib.crc32(variant.encode()), 11])
  skin = int(rng.integers(150, 230))
  return FaceIdentity(skin, int(rng.integers(20, 90)), rng.uniform(0.30, 0.40), rng.uniform(0.36, 0.45),
                      rng.uniform(0.13, 0.18), rng.uniform(0.38, 0.44))


def render_face(score: float, identity: FaceIdentity, rng: np.random.Generator, *, mouth_per_score: float,
                mouth_jitter: float, brow_per_score: float, brow_jitter: float, noise_std: float) -> np.ndarray:
  """The speaker's face showing the attitude `score`: u8[IMAGE_SIZE, IMAGE_SIZE, 1].

  The mouth is a parabola whose corners rise by `mouth_per_score`·score (fraction of the image; a smile when
  positive, a frown when negative); the brows tilt by `brow_per_score`·score radians (inner ends raised: happy;
  lowered: cross). Each gets Gaussian jitter, the head moves by up to 2 pixels, then pixel noise of `noise_std`.
  """
  size = IMAGE_SIZE * _RENDER_SCALE
  image = Image.new("L", (size, size), identity.background)
  draw = ImageDraw.Draw(image)
  cx, cy = (0.5 + rng.uniform(-2, 2, size=2) / IMAGE_SIZE) * size
  hw, hh = identity.half_width * size, identity.half_height * size
  draw.ellipse([cx - hw, cy - hh, cx + hw, cy + hh], fill=identity.skin)
  dark = max(identity.skin - 140, 0)
  eye_y = cy - hh + identity.eye_height * 2 * hh * 0.8
  spacing = identity.eye_spacing * size
  eye_r = 0.035 * size
  brow_tilt = brow_per_score * score + rng.normal(0, brow_jitter)
  brow_half = 0.07 * size
  for side in (-1, 1):
    ex = cx + side * spacing
    draw.ellipse([ex - eye_r, eye_y - eye_r, ex + eye_r, eye_y + eye_r], fill=dark)
    # Inner end (towards the nose) rises with a positive tilt; image y grows downwards.
    by = eye_y - 0.09 * size
    dy = np.tan(brow_tilt) * brow_half
    draw.line([ex - side * brow_half, by - dy, ex + side * brow_half, by + dy], fill=dark, width=_RENDER_SCALE * 2)
  curve = (mouth_per_score * score + rng.normal(0, mouth_jitter)) * size
  mouth_y, mouth_half = cy + 0.45 * hh, 0.45 * hw
  xs = np.linspace(-1, 1, 17)
  points = [(cx + x * mouth_half, mouth_y - curve * x**2) for x in xs]
  draw.line(points, fill=dark, width=_RENDER_SCALE * 2, joint="curve")
  pixels = np.asarray(image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.LANCZOS), dtype=np.float32)
  pixels = pixels + rng.normal(0, noise_std, size=pixels.shape)
  return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)[..., None]
