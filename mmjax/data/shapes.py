"""Shapes: a synthetic image–caption–VQA dataset with held-out colour–shape pairs.

Each scene has 1–3 objects (shape × colour × size) in distinct cells of a 3×3
grid. Captions and questions follow tiny grammars, so every word is known in
advance and a model's errors can be traced to the labels. Each scene also gets
one templated question with a one-word answer (see `vqa_question`). Four
colour–shape pairs never occur in `train`/`test`; the `heldout` split puts at
least one of them in every scene, to test whether a model composes attributes
it has only seen apart.

The data is a pure function of (split seed, example index): each example gets
its own numpy Generator, so generation order, sharding and reruns cannot change
the bytes written. The builder lives here rather than in tfds' package, so it
builds its DatasetInfo directly and images are handed to tfds as PNG bytes
(numpy images would go through `tf.image`, and TensorFlow is not installed).
"""
from __future__ import annotations

import dataclasses
import functools
import io
import multiprocessing
import os
import re
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image, ImageDraw

from mmjax.data.generated import GeneratedBuilder

SHAPES = ("circle", "square", "triangle", "diamond")
COLOURS = ("red", "green", "blue", "yellow", "purple", "cyan")
SIZES = ("small", "large")
# One held-out colour per shape, each colour used at most once, so every shape
# and every colour is still seen in training with other partners.
HELDOUT_PAIRS = (("red", "circle"), ("green", "square"), ("blue", "triangle"), ("yellow", "diamond"))

GRID = 3
MAX_OBJECTS = 3
_RGB = {
    "red": (230, 40, 40),
    "green": (40, 200, 60),
    "blue": (50, 90, 245),
    "yellow": (235, 225, 40),
    "purple": (170, 60, 220),
    "cyan": (40, 215, 225),
}
_BACKGROUND = (18, 18, 26)
_NOISE = 6  # Per-pixel uniform noise in [-_NOISE, _NOISE]: enough to stop pixel-exact memorisation.
# Object half-extent as a fraction of the cell: small and large stay clearly apart
# (≈9 px vs ≈13 px across at 48×48) while a small shape still shows its corners.
_HALF_EXTENT = {"small": 0.29, "large": 0.41}
_MARGIN = 0.04  # Gap (fraction of a cell) kept between a jittered object and its cell border.

_ALL_PAIRS = tuple((c, s) for c in range(len(COLOURS)) for s in range(len(SHAPES)))
_HELDOUT_IDS = tuple((COLOURS.index(c), SHAPES.index(s)) for c, s in HELDOUT_PAIRS)
_SEEN_PAIRS = tuple(p for p in _ALL_PAIRS if p not in _HELDOUT_IDS)


# A pool takes ~3 s to start (each worker imports mmjax.data, hence JAX and
# Grain), so only splits large enough to gain from it use one.
_MIN_EXAMPLES_FOR_POOL = 8_192

_SPLIT_SEEDS = {"train": 1, "test": 2, "heldout": 3}
_BASE_SEED = 20240611


class SceneObject(NamedTuple):
  """One object's labels, as indices into SHAPES, COLOURS, SIZES and the grid."""
  shape: int
  colour: int
  size: int
  row: int
  col: int


_RELATIONS = ("left of", "above")
_GRAMMAR_WORDS = ("a", "left", "of", "above")  # See _RELATIONS.

QUESTION_TYPES = ("count", "colour", "shape", "exists", "relation")
# Asked only of questions redrawn for training with a weight for them (`vqa_question`'s type_weights), never
# stored: "where" names an object and is answered by its cell ("top left"), two words.
TRAINING_QUESTION_TYPES = (*QUESTION_TYPES, "where")
_NUMBERS = ("one", "two", "three")  # Answers to "count", by number of objects.
# Every answer is one word, so VQA can be classification over this fixed list.
ANSWERS = ("no", "yes", *_NUMBERS, *COLOURS, *SHAPES)
_ROWS = ("top", "middle", "bottom")
_COLUMNS = ("left", "centre", "right")
# Spatial relations a question may ask about, each true when A stands so relative to B.
_QUESTION_RELATIONS = {
    "left of": lambda a, b: a.col < b.col,
    "right of": lambda a, b: a.col > b.col,
    "above": lambda a, b: a.row < b.row,
    "below": lambda a, b: a.row > b.row,
}
# "colour" and "shape" questions share the cell template; "?" is a token of its own.
_QUESTION_TEMPLATES = {
    "count": "how many objects are there ?",
    "cell": "what {attribute} is the object in the {row} {column} cell ?",
    "exists": "is there a {colour} {shape} ?",
    "relation": "is the {a} {relation} the {b} ?",
    "where": "what cell is the {a} in ?",
}
_CELL_ATTRIBUTES = ("colour", "shape")  # Question types asked about the object in a named cell.
_QUESTION_WORDS = tuple(" ".join([re.sub(r"{\w+}", " ", template) for template in _QUESTION_TEMPLATES.values()]
                                 + [*_CELL_ATTRIBUTES, *_ROWS, *_COLUMNS, *_QUESTION_RELATIONS, *ANSWERS]).split())
VOCAB = tuple(sorted(set(_GRAMMAR_WORDS + SHAPES + COLOURS + SIZES + _QUESTION_WORDS)))


def describe(obj: SceneObject) -> str:
  """How captions and questions name an object, e.g. "small red circle"."""
  return f"{SIZES[obj.size]} {COLOURS[obj.colour]} {SHAPES[obj.shape]}"


def _phrase(obj: SceneObject) -> str:
  return f"a {describe(obj)}"


def _relations(objects: Sequence[SceneObject]) -> list[str]:
  return [_RELATIONS[0] if b.row == a.row else _RELATIONS[1] for a, b in zip(objects, objects[1:])]


def _join(phrases: Sequence[str], relations: Sequence[str]) -> str:
  words = [phrases[0]]
  for relation, phrase in zip(relations, phrases[1:]):
    words += [relation, phrase]
  return " ".join(words)


def caption_for(objects: Sequence[SceneObject]) -> str:
  """The caption of a scene whose objects are in raster order (row, then column).

  Consecutive phrases are joined by "left of" within a row and "above" across
  rows, so the caption determines the labels' relative layout.
  """
  if not objects:
    raise ValueError("A scene needs at least one object.")
  return _join([_phrase(obj) for obj in objects], _relations(objects))


def hard_negative_caption(objects: Sequence[SceneObject], rng: np.random.Generator) -> str:
  """The caption of a different scene made of the same words: a NegCLIP-style hard negative.

  A contrastive batch of random captions almost never holds "B above A" next to
  "A above B", so a model can match bags of words and still win; these
  negatives make order and relation words count (Yuksekgonul et al. 2023).
  With two or more objects, either two differently described objects swap
  places or one relation flips ("left of" ↔ "above"); a single object changes
  size. Colour–shape pairs are never changed, so no held-out pair appears.
  """
  if not objects:
    raise ValueError("A scene needs at least one object.")
  phrases = [_phrase(obj) for obj in objects]
  relations = _relations(objects)
  swaps = [(i, j) for i in range(len(phrases)) for j in range(i + 1, len(phrases)) if phrases[i] != phrases[j]]
  if relations and (not swaps or rng.random() < 0.5):
    k = int(rng.integers(len(relations)))
    relations[k] = _RELATIONS[1 - _RELATIONS.index(relations[k])]
  elif swaps:
    i, j = swaps[int(rng.integers(len(swaps)))]
    phrases[i], phrases[j] = phrases[j], phrases[i]
  else:
    obj = objects[0]
    phrases[0] = _phrase(obj._replace(size=(obj.size + 1) % len(SIZES)))
  return _join(phrases, relations)


def pair_pool(heldout: bool) -> tuple[tuple[int, int], ...]:
  """The (colour, shape) index pairs a split draws objects from: all 24 in `heldout`, else the 20 seen."""
  return _ALL_PAIRS if heldout else _SEEN_PAIRS


def sample_scene(rng: np.random.Generator, heldout: bool) -> list[SceneObject]:
  """Draws 1–3 objects in distinct cells, returned in raster order.

  Outside the heldout split, colour–shape pairs come from the 20 seen pairs; in
  it, one random object gets a held-out pair and the others any of the 24.
  """
  num_objects = int(rng.integers(1, MAX_OBJECTS + 1))
  cells = np.sort(rng.choice(GRID * GRID, size=num_objects, replace=False))
  pool = pair_pool(heldout)
  pairs = [pool[i] for i in rng.integers(len(pool), size=num_objects)]
  if heldout:
    pairs[rng.integers(num_objects)] = _HELDOUT_IDS[rng.integers(len(_HELDOUT_IDS))]
  sizes = rng.integers(len(SIZES), size=num_objects)
  return [SceneObject(shape=int(shape), colour=int(colour), size=int(size), row=int(cell) // GRID,
                      col=int(cell) % GRID)
          for (colour, shape), size, cell in zip(pairs, sizes, cells)]


def vqa_question(objects: Sequence[SceneObject], rng: np.random.Generator,
                 pairs: Sequence[tuple[int, int]], type_weights: Sequence[float] = ()) -> tuple[str, str, int]:
  """A question about the scene: (question, answer, index of its type in TRAINING_QUESTION_TYPES).

  The type is drawn uniformly among those the scene supports: "relation" needs
  two objects each described ("the small red circle") by a phrase no other
  object shares, or "the" would be ambiguous. One-object scenes therefore never
  get "relation": it is ≈13% of questions and each other type ≈22%, and as
  one-object scenes get "count" more often, "one" answers ≈38% of counts
  (5/13) against ≈31% for "two" and "three". For yes/no questions the answer
  is drawn first, with probability 1/2, so neither answer can be guessed from
  the type alone. `type_weights` (one per QUESTION_TYPES, plus one for "where";
  empty: uniform over QUESTION_TYPES, as the builder draws) weighs the types a
  scene supports, e.g. more relation questions when training draws them afresh.

  A "no" to "is there a ...?" names a pair from `pairs` (the split's pool, see
  `pair_pool`) absent from the scene, so train/test questions never mention a
  held-out pair.
  """
  if not objects:
    raise ValueError("A scene needs at least one object.")
  descriptions = [describe(obj) for obj in objects]
  unique = [obj for obj, description in zip(objects, descriptions) if descriptions.count(description) == 1]
  ordered_pairs = [(a, b) for a in unique for b in unique if a != b]
  kinds = TRAINING_QUESTION_TYPES[:max(len(QUESTION_TYPES), len(type_weights))]
  types = [kind for kind in kinds if (kind != "relation" or ordered_pairs) and (kind != "where" or unique)]
  if type_weights:
    weights = np.array([type_weights[TRAINING_QUESTION_TYPES.index(kind)] for kind in types], dtype=np.float64)
    kind = types[rng.choice(len(types), p=weights / weights.sum())]
  else:
    kind = types[rng.integers(len(types))]
  if kind == "count":
    question, answer = _QUESTION_TEMPLATES["count"], _NUMBERS[len(objects) - 1]
  elif kind in _CELL_ATTRIBUTES:
    obj = objects[rng.integers(len(objects))]
    question = _QUESTION_TEMPLATES["cell"].format(attribute=kind, row=_ROWS[obj.row], column=_COLUMNS[obj.col])
    answer = COLOURS[obj.colour] if kind == "colour" else SHAPES[obj.shape]
  elif kind == "exists":
    present = [(obj.colour, obj.shape) for obj in objects]
    yes = bool(rng.integers(2))
    candidates = present if yes else [pair for pair in pairs if pair not in present]
    colour, shape = candidates[rng.integers(len(candidates))]
    answer = "yes" if yes else "no"
    question = _QUESTION_TEMPLATES["exists"].format(colour=COLOURS[colour], shape=SHAPES[shape])
  elif kind == "where":
    obj = unique[rng.integers(len(unique))]
    question, answer = _QUESTION_TEMPLATES["where"].format(a=describe(obj)), f"{_ROWS[obj.row]} {_COLUMNS[obj.col]}"
  else:
    a, b = ordered_pairs[rng.integers(len(ordered_pairs))]
    yes = bool(rng.integers(2))
    # Two distinct cells differ in row or column, so at least one relation holds
    # and its opposite does not: the list is never empty.
    relations = [name for name, holds in _QUESTION_RELATIONS.items() if holds(a, b) == yes]
    relation = relations[rng.integers(len(relations))]
    question = _QUESTION_TEMPLATES["relation"].format(a=describe(a), relation=relation, b=describe(b))
    answer = "yes" if yes else "no"
  return question, answer, TRAINING_QUESTION_TYPES.index(kind)


def _outline(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]] | None:
  """Polygon vertices of a shape centred at (cx, cy) with half-extent r; None for a circle."""
  if shape == "square":
    return [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
  if shape == "triangle":
    return [(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
  if shape == "diamond":
    return [(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)]
  return None


def jitter_limit(obj: SceneObject, cell: float) -> float:
  """How far (pixels) `obj` may be shifted from its cell's centre, each way, and still stay inside the cell."""
  return max(0.0, 0.5 * cell - _HALF_EXTENT[SIZES[obj.size]] * cell - _MARGIN * cell)


def render_objects(placed: Sequence[tuple[SceneObject, float, float]], *, image_size: int,
                   rng: np.random.Generator) -> Image.Image:
  """Draws each object centred at its (x, y) pixel position on a dark noisy background; `rng` supplies the noise.

  The positions are free (a moving object is drawn between cells); its size comes from the grid's cell.
  """
  cell = image_size / GRID
  image = Image.new("RGB", (image_size, image_size), _BACKGROUND)
  draw = ImageDraw.Draw(image)
  for obj, cx, cy in placed:
    half = _HALF_EXTENT[SIZES[obj.size]] * cell
    colour = _RGB[COLOURS[obj.colour]]
    outline = _outline(SHAPES[obj.shape], cx, cy, half)
    if outline is None:
      draw.ellipse((cx - half, cy - half, cx + half, cy + half), fill=colour)
    else:
      draw.polygon(outline, fill=colour)
  noise = rng.integers(-_NOISE, _NOISE + 1, size=(image_size, image_size, 3), dtype=np.int16)
  pixels = np.clip(np.asarray(image, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
  return Image.fromarray(pixels)


def render_scene(objects: Sequence[SceneObject], *, image_size: int, rng: np.random.Generator) -> Image.Image:
  """Draws the objects on a dark noisy background; `rng` supplies jitter and noise.

  Each object is shifted inside its cell by a random offset small enough that it
  never leaves the cell, so positions vary while the grid labels stay exact.
  """
  cell = image_size / GRID
  placed = []
  for obj in objects:
    limit = jitter_limit(obj, cell)
    dx, dy = rng.uniform(-limit, limit, size=2)
    placed.append((obj, (obj.col + 0.5) * cell + dx, (obj.row + 0.5) * cell + dy))
  return render_objects(placed, image_size=image_size, rng=rng)


def generate_example(split: str, index: int, image_size: int) -> dict[str, Any]:
  """Example `index` of `split` as tfds features; depends on nothing else."""
  rng = np.random.default_rng([_BASE_SEED, _SPLIT_SEEDS[split], index])
  heldout = split == "heldout"
  objects = sample_scene(rng, heldout)
  png = io.BytesIO()
  render_scene(objects, image_size=image_size, rng=rng).save(png, format="png")
  # Drawn last from the same rng, so images and captions are those of version 1.0.0.
  question, answer, question_type = vqa_question(objects, rng, pair_pool(heldout))
  labels = {}
  for field in SceneObject._fields:
    values = [getattr(obj, field) for obj in objects]
    labels[field] = np.array(values + [-1] * (MAX_OBJECTS - len(objects)), dtype=np.int32)
  return dict(image=png.getvalue(), caption=caption_for(objects), num_objects=np.int32(len(objects)),
              question=question, answer=answer, question_type=np.int32(question_type), **labels)


@dataclasses.dataclass
class ShapesConfig(tfds.core.BuilderConfig):
  """Split sizes and image size of one Shapes variant."""
  image_size: int = 48
  num_train: int = 60_000
  num_test: int = 2_000
  num_heldout: int = 2_000


class Shapes(GeneratedBuilder, skip_registration=True):
  """tfds builder for the Shapes dataset (see the module docstring)."""

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {
      "1.0.0": "Initial release.",
      "1.1.0": ("A VQA question, answer and question_type per example; images and captions unchanged. "
                "The vocabulary gains the question words, so word ids change."),
  }
  BUILDER_CONFIGS = [
      ShapesConfig(name="default", description="Full dataset."),
      ShapesConfig(name="small", description="Tests and smoke runs.", num_train=2_048, num_test=512,
                   num_heldout=512),
  ]

  def _info(self) -> tfds.core.DatasetInfo:
    size = self.builder_config.image_size
    labels = tfds.features.Tensor(shape=(MAX_OBJECTS,), dtype=np.int32)
    return tfds.core.DatasetInfo(
        builder=self,
        description=("Scenes of 1-3 coloured shapes on a 3x3 grid with template captions and VQA "
                     "questions; four colour-shape pairs appear only in the `heldout` split."),
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(size, size, 3), encoding_format="png"),
            "caption": tfds.features.Text(),
            "num_objects": tfds.features.Scalar(dtype=np.int32),
            "question": tfds.features.Text(),
            "answer": tfds.features.Text(),
            "question_type": tfds.features.Scalar(dtype=np.int32),
            **{field: labels for field in SceneObject._fields},
        }),
        # Scenes are i.i.d. already; keeping generation order makes record i of a
        # split equal `generate_example(split, i)`, which is easy to check and debug.
        disable_shuffling=True,
        metadata=tfds.core.MetadataDict(vocab=list(VOCAB), shapes=list(SHAPES), colours=list(COLOURS),
                                        sizes=list(SIZES), answers=list(ANSWERS),
                                        question_types=list(QUESTION_TYPES)),
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Iterator]:
    del dl_manager  # Nothing to download: every example is generated.
    config = self.builder_config
    sizes = {"train": config.num_train, "test": config.num_test, "heldout": config.num_heldout}
    return {split: self._generate_examples(split, count) for split, count in sizes.items()}

  def _generate_examples(self, split: str, count: int) -> Iterator[tuple[int, dict[str, Any]]]:
    # Rendering and PNG encoding take ~2/3 of the time, so they run in a process
    # pool while this process serialises and writes: ~2x faster on 2 cores.
    # "spawn" rather than fork: the caller may already run JAX's threads.
    make = functools.partial(generate_example, split, image_size=self.builder_config.image_size)
    if count < _MIN_EXAMPLES_FOR_POOL:
      yield from enumerate(map(make, range(count)))
      return
    # A multiprocessing.Pool rather than concurrent.futures: its workers are
    # daemons, ended at exit or on leaving the `with`, where an executor would
    # first finish every queued chunk (a minute, after a Ctrl-C).
    context = multiprocessing.get_context("spawn")
    with context.Pool(os.cpu_count(), initializer=_init_worker, initargs=(os.getpid(),)) as pool:
      yield from enumerate(pool.imap(make, range(count), chunksize=256))


def _init_worker(parent_pid: int) -> None:
  """Makes a generation worker leave Ctrl-C to its parent and exit if the parent dies.

  A worker whose parent was killed would otherwise block forever on the full
  result pipe, which it shares with its siblings.
  """
  signal.signal(signal.SIGINT, signal.SIG_IGN)

  def exit_when_orphaned() -> None:
    while os.getppid() == parent_pid:
      time.sleep(1.0)
    os._exit(1)

  threading.Thread(target=exit_when_orphaned, daemon=True).start()
