"""Moving Shapes: short clips of Shapes scenes in which objects move, appear, disappear or change colour.

A clip is NUM_FRAMES frames of 48×48 drawn by Shapes' renderer (its shapes, colours, sizes, grid and noise) from a
Shapes scene of 2–3 objects and NUM_EVENTS events, each on its own object:

- move: the object steps one grid cell left, right, up or down (drawn half-way at the event's frame);
- appear / disappear: the object is visible only from / only before the event's frame;
- recolour: the object takes another colour from the event's frame on.

The caption tells the events in time order ("the small red circle moves left then a large blue square appears"),
and each clip gets one question with a one-word answer, of a type in QUESTION_TYPES: three about motion
("which way does ... move ?", "does the A move before the B disappears ?", "how many objects appear ?") and two
static ones (the colour or shape of an object that never appears, disappears or changes colour).

Why the middle frame cannot answer the motion questions: every event of a clip happens on the same side of the
middle frame (all before it, or all after), and no object is ever drawn half-way at it. That frame then shows
either the clip's first or its last state, and which of the two it is, and what happened, cannot be read from it:
an object standing in a cell may have just arrived or be about to leave; the order of two events on one side
of it is not visible at all. What a single frame can still do (guess a direction from where the object stands
against the grid's edge, guess counts from the answer prior) is what the single-frame baseline measures
(configs/moving_shapes.py:frames=middle).

Held-out compositions as in Shapes: the same four colour–shape pairs never appear in `train`/`test` (a recolour
never makes one), and every `heldout` clip shows at least one. Each example is a pure function of (split,
index), through numpy Generators seeded per stream (scene and events, rendering, question), so order, reruns
and changes to one stream leave the others' bytes alone. Frames are stored as one raw u8[T, H, W, 3] array:
reading one is ~100× faster than decoding T PNGs (docs/datasets.md), for 1.7× the disk.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
import tensorflow_datasets as tfds

from mmjax.data import shapes
from mmjax.data.generated import GeneratedBuilder

NUM_FRAMES = 8
MIDDLE_FRAME = NUM_FRAMES // 2
NUM_EVENTS = 2
EVENT_KINDS = ("move", "appear", "disappear", "recolour")
_KIND_WEIGHTS = (0.5, 1 / 6, 1 / 6, 1 / 6)  # Moves are what the direction questions are about.
DIRECTIONS = ("left", "right", "up", "down")
_STEPS = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}  # (rows, columns).
# An event's frame τ: a move is half-way at τ and arrived at τ + 1, the other events hold from τ on. Events before
# the middle frame have arrived by it; events after it start after it: it shows the first or the last state.
EVENT_FRAMES = (tuple(range(1, MIDDLE_FRAME)), tuple(range(MIDDLE_FRAME + 1, NUM_FRAMES - 1)))

QUESTION_TYPES = ("direction", "order", "count", "colour", "shape")
MOTION_TYPES = ("direction", "order", "count")  # Need more than one frame; the others are the static control.
_TYPE_WEIGHTS = {kind: 2.0 if kind in MOTION_TYPES else 1.0 for kind in QUESTION_TYPES}  # What the data is for.
_NUMBERS = ("zero", "one", "two")
ANSWERS = ("no", "yes", *_NUMBERS, *DIRECTIONS, *shapes.COLOURS, *shapes.SHAPES)
# How a caption tells an event, and the verb an order or count question uses for it.
_CAPTION_TEMPLATES = {"move": "the {object} moves {direction}", "appear": "a {object} appears",
                      "disappear": "the {object} disappears", "recolour": "the {object} turns {colour}"}
_VERBS = {"move": "move", "appear": "appear", "disappear": "disappear", "recolour": "change colour"}
_QUESTION_TEMPLATES = {
    "direction": "which way does the {object} move ?",
    "order": "does the {a} {verb_a} before the {b} {verb_b} ?",
    "count": "how many objects {verb} ?",
    "colour": "what colour is the {size} {shape} ?",
    "shape": "what shape is the {size} {colour} object ?",
}
_TEMPLATE_WORDS = " ".join([*_CAPTION_TEMPLATES.values(), *_VERBS.values(), *_QUESTION_TEMPLATES.values(), "then"])
VOCAB = tuple(sorted(set(" ".join(w for w in _TEMPLATE_WORDS.split() if not w.startswith("{")).split())
                     | set(ANSWERS) | set(shapes.SIZES)))

_SPLIT_SEEDS = {"train": 1, "test": 2, "heldout": 3}
_BASE_SEED = 20261201
_SCENE_STREAM, _RENDER_STREAM, _QUESTION_STREAM = range(3)


class Event(NamedTuple):
  """One event, as indices: into EVENT_KINDS, the clip's objects, frames, DIRECTIONS (moves; else -1) and
  shapes.COLOURS (recolours: the new colour; else -1)."""
  kind: int
  obj: int
  frame: int
  direction: int = -1
  colour: int = -1


def _kind(event: Event) -> str:
  return EVENT_KINDS[event.kind]


def _colours(obj: shapes.SceneObject, events: Sequence[Event], index: int) -> set[int]:
  """Every colour object `index` shows in the clip."""
  return {obj.colour} | {e.colour for e in events if e.obj == index and _kind(e) == "recolour"}


def sample_clip(rng: np.random.Generator, heldout: bool) -> tuple[list[shapes.SceneObject], list[Event]]:
  """A Shapes scene of 2–3 objects with distinct descriptions, and NUM_EVENTS events on distinct objects, in time
  order, all before or all after the middle frame. A move's target cell is free (of every object, at every
  frame); a recolour keeps descriptions distinct and never makes a pair outside the split's pool."""
  while True:
    objects = shapes.sample_scene(rng, heldout)
    if len(objects) >= NUM_EVENTS and len({shapes.describe(o) for o in objects}) == len(objects):
      break
  frames = EVENT_FRAMES[int(rng.integers(2))]
  times = np.sort(rng.choice(frames, size=NUM_EVENTS, replace=False))
  actors = rng.choice(len(objects), size=NUM_EVENTS, replace=False)
  taken = {(o.row, o.col) for o in objects}
  pool = shapes.pair_pool(heldout)
  events = []
  for actor, time in zip(actors, times):
    obj = objects[actor]
    moves = [d for d, (dr, dc) in enumerate(_STEPS.values())
             if 0 <= obj.row + dr < shapes.GRID and 0 <= obj.col + dc < shapes.GRID
             and (obj.row + dr, obj.col + dc) not in taken]
    others = {(o.size, c, o.shape) for i, o in enumerate(objects) if i != actor for c in _colours(o, events, i)}
    colours = [c for c in range(len(shapes.COLOURS)) if c != obj.colour and (c, obj.shape) in pool
               and (obj.size, c, obj.shape) not in others]
    feasible = [bool(moves), True, True, bool(colours)]
    weights = np.array(_KIND_WEIGHTS) * feasible
    kind = EVENT_KINDS[rng.choice(len(EVENT_KINDS), p=weights / weights.sum())]
    event = Event(EVENT_KINDS.index(kind), int(actor), int(time))
    if kind == "move":
      event = event._replace(direction=int(moves[rng.integers(len(moves))]))
      dr, dc = _STEPS[DIRECTIONS[event.direction]]
      taken.add((obj.row + dr, obj.col + dc))
    elif kind == "recolour":
      event = event._replace(colour=int(colours[rng.integers(len(colours))]))
    events.append(event)
  return objects, events


def state_at(objects: Sequence[shapes.SceneObject], events: Sequence[Event],
             frame: int) -> list[tuple[shapes.SceneObject, float, float] | None]:
  """Each object at `frame`: (the object with its colour then, its row and column as floats — a moving object is
  between cells), or None while it is not visible."""
  states = []
  for index, obj in enumerate(objects):
    row, col, visible = float(obj.row), float(obj.col), True
    for event in (e for e in events if e.obj == index):
      kind = _kind(event)
      if kind == "move":
        progress = 0.0 if frame < event.frame else 0.5 if frame == event.frame else 1.0
        dr, dc = _STEPS[DIRECTIONS[event.direction]]
        row, col = row + progress * dr, col + progress * dc
      elif kind == "appear":
        visible = frame >= event.frame
      elif kind == "disappear":
        visible = frame < event.frame
      elif frame >= event.frame:
        obj = obj._replace(colour=event.colour)
    states.append((obj, row, col) if visible else None)
  return states


def render_clip(objects: Sequence[shapes.SceneObject], events: Sequence[Event], *, image_size: int,
                rng: np.random.Generator) -> np.ndarray:
  """The clip's frames u8[NUM_FRAMES, S, S, 3]. Each object keeps one offset in its cell (drawn first from `rng`)
  for the whole clip, so only the events change a frame; the noise is drawn afresh per frame."""
  cell = image_size / shapes.GRID
  offsets = [rng.uniform(-shapes.jitter_limit(obj, cell), shapes.jitter_limit(obj, cell), size=2) for obj in objects]
  frames = []
  for frame in range(NUM_FRAMES):
    placed = [(obj, (col + 0.5) * cell + offset[0], (row + 0.5) * cell + offset[1])
              for state, offset in zip(state_at(objects, events, frame), offsets) if state is not None
              for obj, row, col in [state]]
    frames.append(np.asarray(shapes.render_objects(placed, image_size=image_size, rng=rng)))
  return np.stack(frames)


def caption_for(objects: Sequence[shapes.SceneObject], events: Sequence[Event]) -> str:
  """The events in time order, joined by "then"; each object named as it looks just before its event."""
  phrases = []
  for event in sorted(events, key=lambda e: e.frame):
    kind = _kind(event)
    phrases.append(_CAPTION_TEMPLATES[kind].format(
        object=shapes.describe(objects[event.obj]),
        direction=DIRECTIONS[event.direction] if kind == "move" else "",
        colour=shapes.COLOURS[event.colour] if kind == "recolour" else ""))
  return " then ".join(phrases)


def _static_objects(objects: Sequence[shapes.SceneObject], events: Sequence[Event]) -> list[int]:
  """Objects visible in every frame in one colour (they may move): what the static questions ask about."""
  changing = {e.obj for e in events if _kind(e) != "move"}
  return [i for i in range(len(objects)) if i not in changing]


def vqa_question(objects: Sequence[shapes.SceneObject], events: Sequence[Event],
                 rng: np.random.Generator) -> tuple[str, str, int]:
  """(question, answer, index of its type in QUESTION_TYPES), the type drawn among those the clip supports, a
  motion type twice as often as a static one.

  direction: of a moving object. order: "does the A <verb> before the B <verb> ?", yes or no with probability 1/2.
  count: how many objects do one kind of event (zero to NUM_EVENTS); half the time a kind the clip has, else
  any kind, so "zero" is not the usual answer. colour, shape: of an object that stays visible in one colour,
  named by the two attributes no other object shares in any frame.
  """
  static = _static_objects(objects, events)

  def unique(index: int, attributes: tuple[str, str]) -> bool:
    def keys(i: int) -> set[tuple]:
      obj = objects[i]
      return {tuple(obj._replace(colour=c)._asdict()[a] for a in attributes) for c in _colours(obj, events, i)}
    return not any(keys(index) & keys(i) for i in range(len(objects)) if i != index)

  candidates = {
      "direction": [e for e in events if _kind(e) == "move"],
      "order": [events],
      "count": [None],
      "colour": [i for i in static if unique(i, ("size", "shape"))],
      "shape": [i for i in static if unique(i, ("size", "colour"))],
  }
  weights = np.array([_TYPE_WEIGHTS[kind] * bool(candidates[kind]) for kind in QUESTION_TYPES])
  kind = QUESTION_TYPES[rng.choice(len(QUESTION_TYPES), p=weights / weights.sum())]
  subject = candidates[kind][rng.integers(len(candidates[kind]))]
  if kind == "direction":
    question = _QUESTION_TEMPLATES[kind].format(object=shapes.describe(objects[subject.obj]))
    answer = DIRECTIONS[subject.direction]
  elif kind == "order":
    yes = bool(rng.integers(2))
    first, second = subject if yes else subject[::-1]
    question = _QUESTION_TEMPLATES[kind].format(a=shapes.describe(objects[first.obj]), verb_a=_VERBS[_kind(first)],
                                                b=shapes.describe(objects[second.obj]),
                                                verb_b=_VERBS[_kind(second)])
    answer = "yes" if yes else "no"
  elif kind == "count":
    kinds = [_kind(e) for e in events]
    asked = kinds[rng.integers(len(kinds))] if rng.integers(2) else EVENT_KINDS[rng.integers(len(EVENT_KINDS))]
    question, answer = _QUESTION_TEMPLATES[kind].format(verb=_VERBS[asked]), _NUMBERS[kinds.count(asked)]
  else:
    obj = objects[subject]
    question = _QUESTION_TEMPLATES[kind].format(size=shapes.SIZES[obj.size], shape=shapes.SHAPES[obj.shape],
                                                colour=shapes.COLOURS[obj.colour])
    answer = shapes.COLOURS[obj.colour] if kind == "colour" else shapes.SHAPES[obj.shape]
  return question, answer, QUESTION_TYPES.index(kind)


def _padded(values: Sequence[int], length: int) -> np.ndarray:
  return np.array(list(values) + [-1] * (length - len(values)), dtype=np.int32)


def generate_example(split: str, index: int, image_size: int) -> dict[str, Any]:
  """Example `index` of `split` as tfds features; depends on nothing else."""
  def stream(number: int) -> np.random.Generator:
    return np.random.default_rng([_BASE_SEED, _SPLIT_SEEDS[split], index, number])

  objects, events = sample_clip(stream(_SCENE_STREAM), split == "heldout")
  video = render_clip(objects, events, image_size=image_size, rng=stream(_RENDER_STREAM))
  question, answer, question_type = vqa_question(objects, events, stream(_QUESTION_STREAM))
  labels = {field: _padded([getattr(o, field) for o in objects], shapes.MAX_OBJECTS)
            for field in shapes.SceneObject._fields}
  labels.update({f"event_{field}": np.array([getattr(e, field) for e in events], dtype=np.int32)
                 for field in Event._fields})
  return dict(video=video, caption=caption_for(objects, events), num_objects=np.int32(len(objects)),
              question=question, answer=answer, question_type=np.int32(question_type), **labels)


def clip_from_labels(record: dict[str, Any]) -> tuple[list[shapes.SceneObject], list[Event]]:
  """The objects and events back from a record's (or a batch row's) labels."""
  objects = [shapes.SceneObject(*(int(record[field][i]) for field in shapes.SceneObject._fields))
             for i in range(int(record["num_objects"]))]
  events = [Event(*(int(record[f"event_{field}"][i]) for field in Event._fields)) for i in range(NUM_EVENTS)]
  return objects, events


@dataclasses.dataclass
class MovingShapesConfig(shapes.ShapesConfig):
  """Split sizes and frame size of one Moving Shapes variant: Shapes' fields, with clip-sized defaults."""
  num_train: int = 10_000
  num_test: int = 1_000
  num_heldout: int = 1_000


class MovingShapes(GeneratedBuilder, skip_registration=True):
  """tfds builder for Moving Shapes (see the module docstring)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = [
      MovingShapesConfig(name="default", description="Full dataset."),
      MovingShapesConfig(name="small", description="Tests and smoke runs.", num_train=256, num_test=64,
                         num_heldout=64),
  ]

  def _info(self) -> tfds.core.DatasetInfo:
    size = self.builder_config.image_size
    objects = tfds.features.Tensor(shape=(shapes.MAX_OBJECTS,), dtype=np.int32)
    events = tfds.features.Tensor(shape=(NUM_EVENTS,), dtype=np.int32)
    return tfds.core.DatasetInfo(
        builder=self,
        description=(f"Clips of {NUM_FRAMES} frames of Shapes scenes in which objects move, appear, disappear or "
                     "change colour, with captions of the events in order and VQA questions; four colour-shape "
                     "pairs appear only in the `heldout` split."),
        features=tfds.features.FeaturesDict({
            # Raw bytes: one read, no decoding (PNG frames took ~1.7 ms a clip to decode).
            "video": tfds.features.Tensor(shape=(NUM_FRAMES, size, size, 3), dtype=np.uint8,
                                          encoding=tfds.features.Encoding.BYTES),
            "caption": tfds.features.Text(),
            "num_objects": tfds.features.Scalar(dtype=np.int32),
            "question": tfds.features.Text(),
            "answer": tfds.features.Text(),
            "question_type": tfds.features.Scalar(dtype=np.int32),
            **{field: objects for field in shapes.SceneObject._fields},
            **{f"event_{field}": events for field in Event._fields},
        }),
        disable_shuffling=True,  # Record i of a split is generate_example(split, i), as in Shapes.
        metadata=tfds.core.MetadataDict(vocab=list(VOCAB), shapes=list(shapes.SHAPES), colours=list(shapes.COLOURS),
                                        sizes=list(shapes.SIZES), answers=list(ANSWERS),
                                        question_types=list(QUESTION_TYPES), motion_types=list(MOTION_TYPES),
                                        event_kinds=list(EVENT_KINDS), directions=list(DIRECTIONS),
                                        num_frames=NUM_FRAMES),
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Iterator]:
    del dl_manager  # Nothing to download: every example is generated.
    config = self.builder_config
    sizes = {"train": config.num_train, "test": config.num_test, "heldout": config.num_heldout}
    return {split: self._generate_examples(split, count) for split, count in sizes.items()}

  def _generate_examples(self, split: str, count: int) -> Iterator[tuple[int, dict[str, Any]]]:
    size = self.builder_config.image_size
    for index in range(count):
      yield index, generate_example(split, index, size)
