"""The Shapes scene grammar, renderer and tfds builder."""
import collections
import io
import pathlib
import re

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from configs import shapes_vqa
from mmjax.data import shapes
from mmjax.data import tokenizer as tokenizer_lib
from mmjax.data.preprocess import scene_objects

SPLITS = ("train", "test", "heldout")


def _tiny_builder(data_dir) -> shapes.Shapes:
  config = shapes.ShapesConfig(name="tiny", num_train=40, num_test=8, num_heldout=8)
  return shapes.Shapes(config=config, data_dir=str(data_dir))


def _records(builder: tfds.core.DatasetBuilder, split: str) -> list[dict]:
  source = builder.as_data_source(split, decoders={"image": tfds.decode.SkipDecoding()})
  return [source[i] for i in range(len(source))]


def _raw_records(builder: tfds.core.DatasetBuilder, split: str) -> list[bytes]:
  source = builder.as_data_source(split, deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES)
  return [source[i] for i in range(len(source))]


@pytest.fixture(scope="module")
def small_builder(shapes_data_dir) -> shapes.Shapes:
  return shapes.Shapes(config="small", data_dir=shapes_data_dir)


@pytest.fixture(scope="module")
def small_records(small_builder) -> dict[str, list[dict]]:
  return {split: _records(small_builder, split) for split in SPLITS}


def test_caption_grammar():
  red_circle = shapes.SceneObject(shape=0, colour=0, size=0, row=0, col=0)
  assert shapes.caption_for([red_circle]) == "a small red circle"
  objects = [red_circle, shapes.SceneObject(shape=1, colour=2, size=1, row=0, col=2),
             shapes.SceneObject(shape=3, colour=1, size=0, row=2, col=1)]
  assert shapes.caption_for(objects) == (
      "a small red circle left of a large blue square above a small green diamond")
  with pytest.raises(ValueError):
    shapes.caption_for([])


def _parse_caption(caption: str) -> tuple[list[str], list[str]]:
  """(object phrases, relations) of a caption in the Shapes grammar."""
  words = caption.replace("left of", "left_of").split()
  phrases = [" ".join(words[i:i + 4]) for i in range(0, len(words), 5)]
  relations = [words[i].replace("_", " ") for i in range(4, len(words), 5)]
  assert all(p.startswith("a ") for p in phrases) and set(relations) <= {"left of", "above"}, caption
  return phrases, relations


def test_hard_negative_caption_is_another_scene_of_the_same_objects():
  rng = np.random.default_rng(0)
  kinds = collections.Counter()
  for heldout in (False, True):
    for _ in range(300):
      objects = shapes.sample_scene(rng, heldout)
      positive = shapes.caption_for(objects)
      negative = shapes.hard_negative_caption(objects, rng)
      assert negative != positive
      (pos_phrases, pos_rel), (neg_phrases, neg_rel) = _parse_caption(positive), _parse_caption(negative)
      if len(objects) == 1:
        kinds["size"] += 1
        assert pos_phrases[0].split()[2:] == neg_phrases[0].split()[2:], "only the size may change"
      elif pos_rel != neg_rel:
        kinds["relation"] += 1
        assert neg_phrases == pos_phrases and sum(a != b for a, b in zip(pos_rel, neg_rel)) == 1
      else:
        kinds["swap"] += 1
        assert sorted(neg_phrases) == sorted(pos_phrases)
        assert sum(a != b for a, b in zip(pos_phrases, neg_phrases)) == 2
  assert min(kinds.values()) > 50 and len(kinds) == 3, kinds


def test_hard_negative_of_identical_objects_flips_a_relation():
  twins = [shapes.SceneObject(0, 0, 0, 0, 0), shapes.SceneObject(0, 0, 0, 0, 1)]
  rng = np.random.default_rng(0)
  assert {shapes.hard_negative_caption(twins, rng) for _ in range(5)} == {
      "a small red circle above a small red circle"}


def test_split_sizes(small_builder):
  assert {split: small_builder.info.splits[split].num_examples for split in SPLITS} == {
      "train": 2048, "test": 512, "heldout": 512}


def test_stored_captions_and_labels_agree(small_records):
  for split, records in small_records.items():
    for record in records:
      objects = scene_objects(record)
      assert 1 <= len(objects) <= 3
      assert record["caption"].decode() == shapes.caption_for(objects), split
      cells = [obj.row * 3 + obj.col for obj in objects]
      assert cells == sorted(set(cells)), "objects must be in distinct cells, in raster order"
      for field in shapes.SceneObject._fields:
        assert record[field].dtype == np.int32
        assert (record[field][len(objects):] == -1).all()
        assert (record[field][:len(objects)] >= 0).all()


def test_number_of_objects_is_roughly_uniform(small_records):
  counts = collections.Counter(int(r["num_objects"]) for r in small_records["train"])
  assert sorted(counts) == [1, 2, 3]
  assert all(abs(c - 2048 / 3) < 0.1 * 2048 for c in counts.values()), counts


def test_heldout_pairs_only_in_heldout_split(small_records):
  heldout = {(shapes.COLOURS.index(c), shapes.SHAPES.index(s)) for c, s in shapes.HELDOUT_PAIRS}
  assert len(heldout) == 4 and len({s for _, s in heldout}) == 4, "one held-out pair per shape"

  def pairs(record):
    return {(obj.colour, obj.shape) for obj in scene_objects(record)}

  for split in ("train", "test"):
    seen = set().union(*map(pairs, small_records[split]))
    assert not seen & heldout, split
  train_pairs = set().union(*map(pairs, small_records["train"]))
  assert len(train_pairs) == len(shapes.COLOURS) * len(shapes.SHAPES) - 4
  assert all(pairs(record) & heldout for record in small_records["heldout"])
  assert set().union(*(pairs(r) & heldout for r in small_records["heldout"])) == heldout


def test_metadata_vocab_is_exactly_the_words_used(small_builder, small_records):
  metadata = small_builder.info.metadata
  words = {word for r in small_records["train"] for key in ("caption", "question", "answer")
           for word in r[key].decode().split()}
  assert metadata["vocab"] == sorted(words)
  assert (metadata["shapes"], metadata["colours"], metadata["sizes"]) == (
      list(shapes.SHAPES), list(shapes.COLOURS), list(shapes.SIZES))
  assert metadata["answers"] == list(shapes.ANSWERS)
  assert metadata["question_types"] == list(shapes.QUESTION_TYPES)


def test_records_are_generate_example_in_order(small_records):
  for split in SPLITS:
    for index in (0, 1, 511):
      expected = shapes.generate_example(split, index, image_size=48)
      record = small_records[split][index]
      assert record["image"] == expected["image"]
      assert record["caption"].decode() == expected["caption"]
      assert record["question"].decode() == expected["question"]
      assert record["answer"].decode() == expected["answer"]
      assert record["question_type"] == expected["question_type"]
      np.testing.assert_array_equal(record["shape"], expected["shape"])
  assert small_records["train"][0]["image"] != small_records["test"][0]["image"], "splits need their own seeds"


def test_images_are_48x48_rgb_png(small_records):
  image = Image.open(io.BytesIO(small_records["train"][0]["image"]))
  assert (image.format, image.mode, image.size) == ("PNG", "RGB", (48, 48))


def test_generation_is_deterministic_and_independent_of_split_size_and_pool(
    tmp_path, monkeypatch, small_builder):
  serial = _tiny_builder(tmp_path / "serial")
  serial.download_and_prepare(file_format="array_record")
  # Force the process pool for the 40-example train split only (it costs ~3 s to start).
  monkeypatch.setattr(shapes, "_MIN_EXAMPLES_FOR_POOL", 20)
  pooled = _tiny_builder(tmp_path / "pooled")
  pooled.download_and_prepare(file_format="array_record")

  files = sorted(p.name for p in pathlib.Path(serial.data_dir).glob("*.array_record*"))
  assert len(files) == 3
  for name in files:
    assert (pathlib.Path(serial.data_dir) / name).read_bytes() == (
        pathlib.Path(pooled.data_dir) / name).read_bytes(), name
  # Each example depends only on (split, index): the tiny split is a prefix of the small one.
  assert _raw_records(serial, "train") == _raw_records(small_builder, "train")[:40]
  assert _raw_records(serial, "heldout") == _raw_records(small_builder, "heldout")[:8]


def test_failed_generation_never_looks_prepared(tmp_path, monkeypatch):
  def broken(split, index, image_size):
    if index == 5:
      raise RuntimeError("interrupted")
    return real(split, index, image_size)

  real = shapes.generate_example
  monkeypatch.setattr(shapes, "generate_example", broken)
  with pytest.raises(RuntimeError, match="interrupted"):
    _tiny_builder(tmp_path).download_and_prepare(file_format="array_record")
  assert not _tiny_builder(tmp_path).is_prepared()
  assert not list((tmp_path / "shapes" / "tiny").iterdir()), "no version dir, no leftover incomplete dir"

  monkeypatch.setattr(shapes, "generate_example", real)
  builder = _tiny_builder(tmp_path)
  builder.download_and_prepare(file_format="array_record")
  assert builder.is_prepared() and len(_records(builder, "train")) == 40


def _foreground(image: Image.Image) -> np.ndarray:
  """Pixels clearly brighter than the noisy background."""
  return np.asarray(image).max(axis=-1) > 80


@pytest.mark.parametrize("size", shapes.SIZES)
def test_shapes_render_distinctly_at_each_size(size):
  masks = {}
  for shape in shapes.SHAPES:
    obj = shapes.SceneObject(shapes.SHAPES.index(shape), 0, shapes.SIZES.index(size), 1, 1)
    masks[shape] = _foreground(shapes.render_scene([obj], image_size=48, rng=np.random.default_rng(0)))
    assert masks[shape][16:32, 16:32].sum() == masks[shape].sum() > 20, "object stays inside its cell"
  for a in shapes.SHAPES:
    for b in shapes.SHAPES:
      if a < b:
        assert (masks[a] != masks[b]).sum() >= 8, (a, b)


def test_render_uses_the_named_colours_and_sizes():
  for colour in range(len(shapes.COLOURS)):
    areas = []
    for size in range(len(shapes.SIZES)):
      image = shapes.render_scene([shapes.SceneObject(1, colour, size, 0, 2)], image_size=48,
                                  rng=np.random.default_rng(1))
      mask = _foreground(image)
      mean = np.asarray(image)[mask].mean(axis=0)
      rgb = shapes._RGB[shapes.COLOURS[colour]]
      assert np.abs(mean - rgb).max() < 8, (shapes.COLOURS[colour], mean)
      areas.append(mask.sum())
    assert areas[1] > 1.5 * areas[0], "large must be clearly larger than small"


# --- VQA ---------------------------------------------------------------------------------------

_ROW_NAMES, _COLUMN_NAMES = ("top", "middle", "bottom"), ("left", "centre", "right")
# The relation words' meaning on the grid (rows count down from the top).
_GEOMETRY = {"left of": lambda a, b: a.col < b.col, "right of": lambda a, b: a.col > b.col,
             "above": lambda a, b: a.row < b.row, "below": lambda a, b: a.row > b.row}


def _names(obj: shapes.SceneObject) -> tuple[str, str, str]:
  return shapes.SIZES[obj.size], shapes.COLOURS[obj.colour], shapes.SHAPES[obj.shape]


def _the(objects, description: str) -> shapes.SceneObject:
  """The one object `description` ("small red circle") names; fails if it names none or several."""
  [obj] = [o for o in objects if " ".join(_names(o)) == description]
  return obj


def _expected(objects, question: str) -> tuple[str, str]:
  """(question type, answer) worked out from the scene's labels, independently of vqa_question."""
  if question == "how many objects are there ?":
    return "count", ("one", "two", "three")[len(objects) - 1]
  if match := re.fullmatch(r"what (colour|shape) is the object in the (\w+) (\w+) cell \?", question):
    attribute, row, column = match.groups()
    [obj] = [o for o in objects if (o.row, o.col) == (_ROW_NAMES.index(row), _COLUMN_NAMES.index(column))]
    return attribute, _names(obj)[1 if attribute == "colour" else 2]
  if match := re.fullmatch(r"is there a (\w+) (\w+) \?", question):
    return "exists", "yes" if any(_names(o)[1:] == match.groups() for o in objects) else "no"
  if match := re.fullmatch(r"what cell is the (\w+ \w+ \w+) in \?", question):
    obj = _the(objects, match[1])
    return "where", f"{_ROW_NAMES[obj.row]} {_COLUMN_NAMES[obj.col]}"
  match = re.fullmatch(r"is the (\w+ \w+ \w+) (left of|right of|above|below) the (\w+ \w+ \w+) \?", question)
  assert match, f"question outside the grammar: {question!r}"
  a, b = _the(objects, match[1]), _the(objects, match[3])
  assert a != b
  return "relation", "yes" if _GEOMETRY[match[2]](a, b) else "no"


def _heldout_pair_named(question: str) -> bool:
  return any(f" {colour} {shape} " in question for colour, shape in shapes.HELDOUT_PAIRS)


def _draw(split: str, index: int) -> tuple[list[shapes.SceneObject], tuple[str, str, int]]:
  """A scene and its question as generate_example draws them, minus the rendering in between (slow)."""
  rng = np.random.default_rng([99, SPLITS.index(split), index])
  objects = shapes.sample_scene(rng, heldout=split == "heldout")
  return objects, shapes.vqa_question(objects, rng, shapes.pair_pool(split == "heldout"))


@pytest.fixture(scope="module")
def drawn() -> dict[str, list[tuple[list[shapes.SceneObject], tuple[str, str, int]]]]:
  return {split: [_draw(split, index) for index in range(6_000)] for split in SPLITS}


def test_vqa_answers_match_the_scene(drawn, small_records):
  stored = [(scene_objects(r), (r["question"].decode(), r["answer"].decode(), int(r["question_type"])))
            for records in small_records.values() for r in records]
  tokenizer = tokenizer_lib.WordTokenizer(shapes.VOCAB)
  answers = collections.Counter()
  for objects, (question, answer, question_type) in [pair for split in SPLITS for pair in drawn[split]] + stored:
    assert _expected(objects, question) == (shapes.QUESTION_TYPES[question_type], answer), (objects, question)
    assert tokenizer.unk_id not in tokenizer.encode(question) + tokenizer.encode(answer), (question, answer)
    answers[answer] += 1
  assert set(answers) == set(shapes.ANSWERS), "every answer occurs, and no other"


def test_questions_and_answers_fit_the_configured_lengths(drawn):
  config = shapes_vqa.get_config().data
  tokenizer = tokenizer_lib.WordTokenizer(shapes.VOCAB)
  questions = {question for split in SPLITS for _, (question, _, _) in drawn[split]}
  longest = max(questions, key=lambda q: len(tokenizer.encode(q)))
  assert longest.startswith("is the ") and (" left of " in longest or " right of " in longest), longest
  assert len(tokenizer.encode(longest)) + 1 <= config.question_len
  for answer in shapes.ANSWERS:
    assert len(tokenizer.encode(answer)) + 1 <= config.answer_len, answer
    tokenizer_lib.tokenize_to_length(tokenizer, answer, config.answer_len)
  tokenizer_lib.tokenize_to_length(tokenizer, longest, config.question_len)


@pytest.mark.parametrize("split", ["train", "heldout"])
def test_vqa_types_and_answers_are_balanced(drawn, split):
  types, yes, counts = collections.Counter(), collections.Counter(), collections.Counter()
  relation_words = collections.defaultdict(collections.Counter)
  asked_cells = collections.Counter()  # Which of a 3-object scene's objects a colour/shape question names.
  for objects, (question, answer, question_type) in drawn[split]:
    kind = shapes.QUESTION_TYPES[question_type]
    types[kind] += 1
    if kind in ("colour", "shape") and len(objects) == 3:
      cells = [f"the {_ROW_NAMES[o.row]} {_COLUMN_NAMES[o.col]} cell" for o in objects]
      [index] = [i for i, cell in enumerate(cells) if cell in question]
      asked_cells[index] += 1
    if kind in ("exists", "relation"):
      yes[kind] += answer == "yes"
    if kind == "count":
      counts[answer] += 1
    if kind == "relation":
      [word] = [w for w in _GEOMETRY if f" {w} the " in question]
      relation_words[word][answer] += 1
  total = sum(types.values())
  share = {kind: types[kind] / total for kind in shapes.QUESTION_TYPES}
  # One-object scenes (1/3) cannot get "relation", nor can the ~5% of larger
  # scenes without two uniquely described objects: it gets ≈ 2/3·1/5·0.95 ≈ 0.127
  # of questions, the others ≈ (1 - 0.127)/4 ≈ 0.218.
  assert 0.11 < share["relation"] < 0.145, share
  assert all(0.20 < share[kind] < 0.237 for kind in shapes.QUESTION_TYPES[:4]), share
  for kind in ("exists", "relation"):
    assert abs(yes[kind] / types[kind] - 0.5) < 0.05, (kind, yes[kind], types[kind])
  # "count" is 1/4 of one-object scenes' questions but 1/5 of the others', so
  # "one" answers 5/13 ≈ 0.385 of counts and "two", "three" 4/13 ≈ 0.31 each.
  count_share = {answer: counts[answer] / types["count"] for answer in ("one", "two", "three")}
  assert abs(count_share["one"] - 5 / 13) < 0.045, count_share
  assert all(abs(count_share[a] - 4 / 13) < 0.045 for a in ("two", "three")), count_share
  assert all(abs(asked_cells[i] / asked_cells.total() - 1 / 3) < 0.06 for i in range(3)), asked_cells
  # Nor does the relation word give the answer away: yes ≈ 1/2 for each.
  assert set(relation_words) == set(_GEOMETRY)
  for word, answers in relation_words.items():
    assert abs(answers["yes"] / answers.total() - 0.5) < 0.12, (word, answers)


def test_no_answers_never_name_a_heldout_pair_outside_heldout(drawn, small_records):
  def named_by_no(questions_and_answers):
    return [q for q, a in questions_and_answers if q.startswith("is there a ") and a == "no"]

  for split in ("train", "test"):
    noes = named_by_no([(q, a) for _, (q, a, _) in drawn[split]])
    noes += named_by_no([(r["question"].decode(), r["answer"].decode()) for r in small_records[split]])
    assert len(noes) > 500 and not any(map(_heldout_pair_named, noes)), split
  # The heldout split's pool is every pair, so there a "no" may name one: the check above can fail.
  assert any(map(_heldout_pair_named, named_by_no([(q, a) for _, (q, a, _) in drawn["heldout"]])))


# Captions of version 1.0.0 (before VQA fields): adding the question must not move the rng.
_CAPTIONS_1_0_0 = {
    ("train", 0): "a small green diamond left of a small green circle above a small cyan square",
    ("train", 7): "a small purple diamond above a small cyan circle",
    ("test", 0): "a small purple square above a large yellow square",
    ("test", 7): "a large purple square",
    ("heldout", 0): "a small blue triangle left of a large red circle",
    ("heldout", 7): "a small red diamond above a small green square",
}


@pytest.mark.parametrize("split,index", sorted(_CAPTIONS_1_0_0))
def test_vqa_fields_leave_images_and_captions_unchanged(split, index):
  example = shapes.generate_example(split, index, image_size=48)
  assert example["caption"] == _CAPTIONS_1_0_0[split, index]
  # Replays generate_example: the scene, then the image, then the question, from one rng.
  rng = np.random.default_rng([shapes._BASE_SEED, shapes._SPLIT_SEEDS[split], index])
  objects = shapes.sample_scene(rng, heldout=split == "heldout")
  png = io.BytesIO()
  shapes.render_scene(objects, image_size=48, rng=rng).save(png, format="png")
  assert example["image"] == png.getvalue()
  assert example["caption"] == shapes.caption_for(objects)
  for field in shapes.SceneObject._fields:
    assert list(example[field][:len(objects)]) == [getattr(obj, field) for obj in objects]
  question, answer, question_type = shapes.vqa_question(objects, rng, shapes.pair_pool(split == "heldout"))
  assert (example["question"], example["answer"], example["question_type"]) == (question, answer, question_type)
  assert example["question_type"].dtype == np.int32

  again = shapes.generate_example(split, index, image_size=48)
  assert again.keys() == example.keys()
  for key in example:
    assert np.asarray(again[key]).tobytes() == np.asarray(example[key]).tobytes(), key


@pytest.mark.parametrize("weights", [(1, 1, 1, 1, 4), (1, 1, 1, 1, 4, 2)])
def test_type_weights_shift_the_mix_and_keep_answers_true(drawn, weights):
  """Weights per question type (fresh training questions) change how often each type is asked, never the answer:
  relation weighted 4× is asked more than twice as often (≈13% → ≈32%: one-object scenes and scenes of look-alike
  objects support no relation question), every answer still what the scene says; a sixth weight adds the
  training-only "where" questions (answered by the object's cell), which the stored splits never ask."""
  scenes = [objects for objects, _ in drawn["train"][:3_000]]
  rng = np.random.default_rng(1)
  kinds = collections.Counter()
  for objects in scenes:
    question, answer, question_type = shapes.vqa_question(objects, rng, shapes.pair_pool(False), weights)
    kind = shapes.TRAINING_QUESTION_TYPES[question_type]
    assert _expected(objects, question) == (kind, answer), (objects, question)
    kinds[kind] += 1
  uniform = collections.Counter(shapes.QUESTION_TYPES[kind] for _, (_, _, kind) in drawn["train"][:3_000])
  assert kinds["relation"] > 2 * uniform["relation"], (uniform, kinds)
  assert set(kinds) == set(shapes.TRAINING_QUESTION_TYPES[:len(weights)]) and "where" not in uniform


def test_relation_questions_need_uniquely_described_objects():
  rng = np.random.default_rng(0)
  twins = [shapes.SceneObject(0, 0, 0, 0, 0), shapes.SceneObject(0, 0, 0, 0, 1)]
  # Two of three objects alike: only one object is named unambiguously, so no relation question.
  for objects in (twins, twins + [shapes.SceneObject(1, 2, 1, 2, 2)]):
    kinds = {shapes.QUESTION_TYPES[shapes.vqa_question(objects, rng, shapes.pair_pool(False))[2]]
             for _ in range(200)}
    assert kinds == set(shapes.QUESTION_TYPES) - {"relation"}, kinds
  with pytest.raises(ValueError):
    shapes.vqa_question([], rng, shapes.pair_pool(False))
