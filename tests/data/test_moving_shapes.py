"""Moving Shapes: clip sampling, what the middle frame shows, captions and questions against the labels, the
tfds builder and the batches."""
import re

import numpy as np
import pytest
import tensorflow_datasets as tfds

from configs import common
from mmjax import data as mmdata
from mmjax.data import moving_shapes as ms
from mmjax.data import shapes

SPLITS = ("train", "test", "heldout")
HELDOUT_IDS = {(shapes.COLOURS.index(c), shapes.SHAPES.index(s)) for c, s in shapes.HELDOUT_PAIRS}


def _clips(split_heldout: bool, count: int = 400) -> list[tuple]:
  rng = np.random.default_rng(7 + split_heldout)
  return [ms.sample_clip(rng, split_heldout) for _ in range(count)]


def _kind(event: ms.Event) -> str:
  return ms.EVENT_KINDS[event.kind]


@pytest.fixture(scope="module")
def builder(moving_shapes_data_dir) -> ms.MovingShapes:
  return ms.MovingShapes(config="small", data_dir=moving_shapes_data_dir)


@pytest.fixture(scope="module")
def records(builder) -> dict[str, list[dict]]:
  return {split: [*builder.as_data_source(split)] for split in SPLITS}


@pytest.mark.parametrize("heldout", [False, True])
def test_clips_events_and_held_out_pairs(heldout):
  for objects, events in _clips(heldout):
    assert 2 <= len(objects) <= shapes.MAX_OBJECTS and len({shapes.describe(o) for o in objects}) == len(objects)
    assert len(events) == ms.NUM_EVENTS and len({e.obj for e in events}) == ms.NUM_EVENTS
    assert [e.frame for e in events] == sorted({e.frame for e in events})
    assert any(set(e.frame for e in events) <= set(half) for half in ms.EVENT_FRAMES)
    shown = set()
    cells = {frame: [] for frame in range(ms.NUM_FRAMES)}
    for frame in range(ms.NUM_FRAMES):
      for state in filter(None, ms.state_at(objects, events, frame)):
        obj, row, col = state
        shown.add((obj.colour, obj.shape))
        assert 0 <= row <= shapes.GRID - 1 and 0 <= col <= shapes.GRID - 1
        cells[frame].append((row, col))
    assert all(len(set(c)) == len(c) for c in cells.values()), "objects never share a cell"
    assert bool(shown & HELDOUT_IDS) == heldout


def test_the_middle_frame_shows_the_first_or_the_last_state_and_no_motion():
  for objects, events in _clips(False):
    middle = ms.state_at(objects, events, ms.MIDDLE_FRAME)
    before = events[0].frame < ms.MIDDLE_FRAME
    assert middle == ms.state_at(objects, events, ms.NUM_FRAMES - 1 if before else 0)
    assert all(row == int(row) and col == int(col) for _, row, col in filter(None, middle))


def _alternatives(objects, events):
  """Other clips with the same middle frame: the events' frames swapped (the order answer flips), and each move
  in another free direction — after the middle frame from the same cell, before it into the same cell."""
  (a, b) = events
  yield "order", objects, [a._replace(frame=b.frame), b._replace(frame=a.frame)][::-1]
  for i, event in enumerate(events):
    if _kind(event) != "move":
      continue
    obj = objects[event.obj]
    row_step, col_step = ms._STEPS[ms.DIRECTIONS[event.direction]]
    arrived = (obj.row + row_step, obj.col + col_step)
    for direction, (dr, dc) in enumerate(ms._STEPS.values()):
      start = (obj.row, obj.col) if event.frame > ms.MIDDLE_FRAME else (arrived[0] - dr, arrived[1] - dc)
      moved = [o._replace(row=start[0], col=start[1]) if j == event.obj else o for j, o in enumerate(objects)]
      other = [*events[:i], event._replace(direction=direction), *events[i + 1:]]
      if direction != event.direction and all(0 <= x < shapes.GRID for x in (*start, start[0] + dr, start[1] + dc)):
        yield "direction", moved, other


def test_motion_answers_are_not_given_by_the_middle_frame():
  """For every clip, other clips with exactly the same middle frame tell their events in another order or move
  their objects another way: what the middle frame implies, the motion answers contradict."""
  found = {"order": 0, "direction": 0}
  for objects, events in _clips(False):
    middle = ms.state_at(objects, events, ms.MIDDLE_FRAME)
    for kind, other_objects, other_events in _alternatives(objects, events):
      if ms.state_at(other_objects, other_events, ms.MIDDLE_FRAME) != middle:
        continue  # E.g. a start cell another object holds: not a valid clip.
      assert ms.caption_for(other_objects, other_events) != ms.caption_for(objects, events)
      found[kind] += 1
  assert found["order"] == 400 and found["direction"] > 100, found


def test_records_are_generate_example_in_order(records):
  for split in SPLITS:
    for index in (0, len(records[split]) - 1):
      expected, record = ms.generate_example(split, index, image_size=48), records[split][index]
      np.testing.assert_array_equal(record["video"], expected["video"])
      for field in ("caption", "question", "answer"):
        assert record[field].decode() == expected[field]
      for field in ("question_type", "shape", "colour", "event_kind", "event_frame", "event_direction"):
        np.testing.assert_array_equal(record[field], expected[field])
  assert not np.array_equal(records["train"][0]["video"], records["test"][0]["video"]), "splits need own seeds"
  np.testing.assert_array_equal(ms.generate_example("train", 5, 48)["video"],
                                ms.generate_example("train", 5, 48)["video"])


def _answer(objects, events, question: str) -> str:
  """The answer to a question, worked out from the labels by parsing it."""
  named = {shapes.describe(o): i for i, o in enumerate(objects)}
  if match := re.fullmatch(r"which way does the (.+) move \?", question):
    return next(ms.DIRECTIONS[e.direction] for e in events if e.obj == named[match[1]])
  if match := re.fullmatch(r"does the (.+) (?:move|appear|disappear|change colour) before the (.+) "
                           r"(?:move|appear|disappear|change colour) \?", question):
    frames = {e.obj: e.frame for e in events}
    return "yes" if frames[named[match[1]]] < frames[named[match[2]]] else "no"
  if match := re.fullmatch(r"how many objects (move|appear|disappear|change colour) \?", question):
    return ("zero", "one", "two")[sum(ms._VERBS[_kind(e)] == match[1] for e in events)]
  if match := re.fullmatch(r"what colour is the (\w+) (\w+) \?", question):
    (obj,) = [o for o in objects if (shapes.SIZES[o.size], shapes.SHAPES[o.shape]) == match.groups()]
    return shapes.COLOURS[obj.colour]
  match = re.fullmatch(r"what shape is the (\w+) (\w+) object \?", question)
  (obj,) = [o for o in objects if (shapes.SIZES[o.size], shapes.COLOURS[o.colour]) == match.groups()]
  return shapes.SHAPES[obj.shape]


def test_captions_questions_and_answers_agree_with_the_labels(records):
  types = set()
  for split in SPLITS:
    for record in records[split]:
      objects, events = ms.clip_from_labels(record)
      assert record["caption"].decode() == ms.caption_for(objects, events)
      assert record["answer"].decode() == _answer(objects, events, record["question"].decode())
      types.add(ms.QUESTION_TYPES[record["question_type"]])
      assert set(f"{record['caption'].decode()} {record['question'].decode()}".split()) <= set(ms.VOCAB)
  assert types == set(ms.QUESTION_TYPES)


def test_batches_carry_the_clip_and_its_middle_frame(moving_shapes_data_dir, builder):
  data_config = common.moving_shapes_data(smoke=True)
  data_config.data_dir = moving_shapes_data_dir
  batch = next(mmdata.eval_batches(data_config, "test", batch_size=8))
  assert batch["video"].shape == (8, ms.NUM_FRAMES, 48, 48, 3) and batch["video"].dtype == np.float32
  assert -1.0 <= batch["video"].min() and batch["video"].max() <= 1.0
  np.testing.assert_array_equal(batch["image"], batch["video"][:, ms.MIDDLE_FRAME])
  assert batch["question"].shape == (8, data_config.question_len) and batch["caption"][0]
  assert builder.info.features["video"].shape == (ms.NUM_FRAMES, 48, 48, 3)
  assert isinstance(builder.info.features["video"], tfds.features.Tensor)
  assert mmdata.label_names(data_config)["question_type"] == list(ms.QUESTION_TYPES)
