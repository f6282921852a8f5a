"""The input pipeline: prepare, tokenizer, train_loader (determinism, resume) and eval_batches."""
import collections
import json
import os
import re
from concurrent import futures

import jax
import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from configs import common
from mmjax import data as mmdata
from mmjax import errors
from mmjax.data import batch_reader, features, pipeline, preprocess, registry
from mmjax.data import shapes

LABEL_FIELDS = {"shape", "colour", "size", "row", "col"}
VQA_FIELDS = {"question", "answer", "answer_id", "question_type"}
TRAIN_FIELDS = {"image", "text", "num_objects"} | LABEL_FIELDS | VQA_FIELDS
EVAL_FIELDS = TRAIN_FIELDS | {"caption", "question_text", "valid"}


def _config(data_dir: str, **fields) -> ml_collections.ConfigDict:
  """The small Shapes variant's data block in `data_dir`, with `fields` changed."""
  config = common.shapes_data(smoke=True, text_len=18)
  config.update(data_dir=data_dir, **fields)
  return config


@pytest.fixture(scope="module")
def data_config(shapes_data_dir):
  return _config(shapes_data_dir)


@pytest.fixture(scope="module")
def captions(data_config) -> dict[str, list[str]]:
  """Every stored caption, in record order."""
  builder = mmdata.prepare(data_config)
  result = {}
  for split in ("train", "test"):
    source = builder.as_data_source(split, decoders={"image": tfds.decode.SkipDecoding()})
    result[split] = [source[i]["caption"].decode() for i in range(len(source))]
  return result


def _with(config: ml_collections.ConfigDict, **fields) -> ml_collections.ConfigDict:
  """A copy of `config` with `fields` changed."""
  config = ml_collections.ConfigDict(config.to_dict())
  config.update(**fields)
  return config


def _take(loader, count):
  return [next(loader) for _ in range(count)]


def _assert_batches_equal(a, b):
  assert a.keys() == b.keys()
  for key in a:
    np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def _caption_of_labels(batch, row):
  return shapes.caption_for(preprocess.scene_objects({key: value[row] for key, value in batch.items()}))


def test_prepare_reuses_prepared_data(data_config):
  builder = mmdata.prepare(data_config)
  record_file = next(f for f in os.listdir(builder.data_dir) if "train.array_record" in f)
  before = os.stat(os.path.join(builder.data_dir, record_file)).st_mtime_ns
  again = mmdata.prepare(data_config)
  assert again.data_dir == builder.data_dir
  assert os.stat(os.path.join(builder.data_dir, record_file)).st_mtime_ns == before


def test_concurrent_first_use_generates_once(tmp_path):
  config = _config(str(tmp_path))
  with futures.ThreadPoolExecutor(2) as pool:
    builders = list(pool.map(lambda _: mmdata.prepare(config), range(2)))
  assert all(builder.is_prepared() for builder in builders)
  assert [p.name for p in (tmp_path / "shapes" / "small").iterdir()] == ["1.1.0"]


def test_dataset_facts(data_config):
  assert mmdata.num_examples(data_config, "train") == 2048
  assert mmdata.num_examples(data_config, "heldout") == 512
  assert mmdata.num_examples(data_config, "test[:100]") == 100
  assert mmdata.label_names(data_config) == {
      "shape": list(shapes.SHAPES), "colour": list(shapes.COLOURS), "size": list(shapes.SIZES),
      "answer_id": list(shapes.ANSWERS), "question_type": list(shapes.QUESTION_TYPES)}
  assert mmdata.sample_rate(data_config) is None
  tokenizer = mmdata.get_tokenizer(data_config)
  assert tokenizer.pad_id == 0 and tokenizer.vocab_size == 4 + len(shapes.VOCAB)


def test_train_batch_fields_and_ranges(data_config):
  batch = next(mmdata.train_loader(data_config, batch_size=16, seed=0))
  assert set(batch) == TRAIN_FIELDS
  assert batch["image"].dtype == np.float32 and batch["image"].shape == (16, 48, 48, 3)
  assert -1.0 <= batch["image"].min() < -0.8 and 0.8 < batch["image"].max() <= 1.0
  assert batch["text"].dtype == np.int32 and batch["text"].shape == (16, data_config.text_len)
  assert batch["num_objects"].shape == (16,)
  for field in LABEL_FIELDS:
    assert batch[field].dtype == np.int32 and batch[field].shape == (16, 3)
  tokenizer = mmdata.get_tokenizer(data_config)
  for row in range(16):
    assert tokenizer.decode(batch["text"][row]) == _caption_of_labels(batch, row)
    eos = list(batch["text"][row]).index(tokenizer.eos_id)
    assert (batch["text"][row, eos + 1:] == 0).all()


def _assert_vqa_fields(batch, data_config, batch_size, num_valid):
  """Shapes and dtypes of the VQA fields, and their agreement with each other and the vocabulary
  in the first `num_valid` rows; returns those rows' decoded questions."""
  assert batch["question"].dtype == np.int32 and batch["question"].shape == (batch_size, data_config.question_len)
  assert batch["answer"].dtype == np.int32 and batch["answer"].shape == (batch_size, data_config.answer_len)
  for field in ("answer_id", "question_type"):
    assert batch[field].dtype == np.int32 and batch[field].shape == (batch_size,)
  names = mmdata.label_names(data_config)
  tokenizer = mmdata.get_tokenizer(data_config)
  questions = [tokenizer.decode(q) for q in batch["question"][:num_valid]]
  answers = [tokenizer.decode(a) for a in batch["answer"][:num_valid]]
  assert answers == [names["answer_id"][i] for i in batch["answer_id"][:num_valid]]
  starts = {"count": "how many", "colour": "what colour", "shape": "what shape", "exists": "is there a",
            "relation": "is the"}
  types = [names["question_type"][t] for t in batch["question_type"][:num_valid]]
  assert all(q.startswith(starts[t]) for q, t in zip(questions, types))
  return questions


@pytest.mark.parametrize("hard_negatives", [False, True])
def test_element_spec_is_a_training_example_without_reading_train(data_config, hard_negatives, monkeypatch):
  """The shapes that size a model's parameters: those of a real training batch's rows, read from a held-out
  split (evaluation never opens the train split)."""
  config = _config(data_config.data_dir, hard_negatives=hard_negatives)
  batch = next(mmdata.train_loader(config, batch_size=8, seed=0))
  opened = []
  builder_cls = type(mmdata.prepare(config))
  original = builder_cls.as_data_source
  monkeypatch.setattr(builder_cls, "as_data_source",
                      lambda self, split, **kwargs: opened.append(split) or original(self, split, **kwargs))
  spec = mmdata.element_spec(config)
  assert "train" not in opened and opened
  assert {k: (v.shape, v.dtype) for k, v in spec.items()} == {k: (v.shape[1:], v.dtype) for k, v in batch.items()}


def test_train_and_eval_batches_carry_the_vqa_fields(data_config):
  batch = next(mmdata.train_loader(data_config, batch_size=64, seed=0))
  _assert_vqa_fields(batch, data_config, 64, num_valid=64)
  assert len(set(batch["question_type"].tolist())) == len(shapes.QUESTION_TYPES)

  [batch] = list(mmdata.eval_batches(data_config, "test[:40]", batch_size=48))
  questions = _assert_vqa_fields(batch, data_config, 48, num_valid=40)
  assert batch["question_text"].dtype == object and batch["caption"].dtype == object
  assert questions == [str(q) for q in batch["question_text"][:40]]
  source = mmdata.prepare(data_config).as_data_source("test", decoders={"image": tfds.decode.SkipDecoding()})
  assert questions == [source[i]["question"].decode() for i in range(40)]
  assert (batch["question"][40:] == 0).all() and (batch["answer_id"][40:] == 0).all()


def test_train_order_is_deterministic_from_seed(data_config):
  first = _take(mmdata.train_loader(data_config, batch_size=8, seed=3), 3)
  again = _take(mmdata.train_loader(data_config, batch_size=8, seed=3), 3)
  other = _take(mmdata.train_loader(data_config, batch_size=8, seed=4), 3)
  for a, b in zip(first, again):
    _assert_batches_equal(a, b)
  assert not all(np.array_equal(a["image"], b["image"]) for a, b in zip(first, other))


def test_global_batches_do_not_depend_on_the_process_count(data_config, monkeypatch):
  """Process p of P loads rows [p·B/P, (p+1)·B/P) of the global batch one process would load,
  so a multi-process run trains on the same batches (and follows the same trajectory)."""
  one_process = _take(mmdata.train_loader(data_config, batch_size=12, seed=5), 3)
  for process_count in (2, 3):
    monkeypatch.setattr(jax, "process_count", lambda count=process_count: count)
    per_process = []
    for index in range(process_count):
      monkeypatch.setattr(jax, "process_index", lambda index=index: index)
      per_process.append(_take(mmdata.train_loader(data_config, batch_size=12 // process_count, seed=5), 3))
    for step, expected in enumerate(one_process):
      got = {key: np.concatenate([batches[step][key] for batches in per_process]) for key in expected}
      _assert_batches_equal(got, expected)


def test_an_epoch_is_a_permutation_of_the_train_split(data_config, captions):
  loader = mmdata.train_loader(data_config, batch_size=256, seed=0)
  tokenizer = mmdata.get_tokenizer(data_config)
  seen = [tokenizer.decode(text) for batch in _take(loader, 2048 // 256) for text in batch["text"]]
  assert collections.Counter(seen) == collections.Counter(captions["train"])
  assert seen != captions["train"], "train order must be shuffled"


def test_hard_negatives_are_other_captions_of_the_same_scene(data_config):
  config = _config(data_config.data_dir, hard_negatives=True)
  batch = next(mmdata.train_loader(config, batch_size=64, seed=0))
  assert set(batch) == TRAIN_FIELDS | {"negative_text"}
  assert batch["negative_text"].shape == batch["text"].shape
  tokenizer = mmdata.get_tokenizer(data_config)

  def colour_shape_pairs(caption):
    return sorted(re.findall(rf"(\w+) ({'|'.join(shapes.SHAPES)})", caption))

  for row in range(64):
    positive, negative = tokenizer.decode(batch["text"][row]), tokenizer.decode(batch["negative_text"][row])
    assert negative != positive and colour_shape_pairs(negative) == colour_shape_pairs(positive)


def test_fresh_questions_are_new_questions_about_the_same_scene(data_config):
  """With fresh_questions each training example's question is drawn again from its scene's labels: every answer
  is what the scene says (count, the named cell's colour or shape, the relation), and questions change."""
  stored = next(mmdata.train_loader(data_config, batch_size=64, seed=0))
  batch = next(mmdata.train_loader(_with(data_config, fresh_questions=True), batch_size=64, seed=0))
  assert set(batch) == TRAIN_FIELDS and np.array_equal(batch["image"], stored["image"])
  tokenizer = mmdata.get_tokenizer(data_config)
  relations = {"left of": lambda a, b: a.col < b.col, "right of": lambda a, b: a.col > b.col,
               "above": lambda a, b: a.row < b.row, "below": lambda a, b: a.row > b.row}
  for row, objects in enumerate(preprocess.batch_scenes(batch)):
    question, answer = tokenizer.decode(batch["question"][row]), tokenizer.decode(batch["answer"][row])
    kind = shapes.QUESTION_TYPES[batch["question_type"][row]]
    assert shapes.ANSWERS[batch["answer_id"][row]] == answer
    if kind == "count":
      assert answer == ("one", "two", "three")[len(objects) - 1]
    elif kind in ("colour", "shape"):
      row_word, column_word = question.split()[-4:-2]  # "... the top left cell ?"
      [obj] = [o for o in objects if (shapes._ROWS[o.row], shapes._COLUMNS[o.col]) == (row_word, column_word)]
      assert answer == (shapes.COLOURS[obj.colour] if kind == "colour" else shapes.SHAPES[obj.shape])
    elif kind == "relation":
      first, relation, second = re.fullmatch(r"is the (.+) (left of|right of|above|below) the (.+) \?",
                                             question).groups()
      [a], [b] = ([o for o in objects if shapes.describe(o) == d] for d in (first, second))
      assert answer == ("yes" if relations[relation](a, b) else "no")
  assert (batch["question"] != stored["question"]).any(axis=1).mean() > 0.5


def test_where_questions_leave_no_class_id_and_bad_weights_are_refused(data_config):
  """A weight for the training-only "where" questions gives two-word answers ("top left") that are no class of
  the answer set: the batch then has no answer_id (a classifier head is refused before compiling, its field
  missing), and the element spec the trainer checks says so. Weights of the wrong length or sign are refused."""
  config = _with(data_config, fresh_questions=True, answer_len=3, question_type_weights=(0, 0, 0, 0, 0, 1))
  batch = next(mmdata.train_loader(config, batch_size=16, seed=0))
  tokenizer = mmdata.get_tokenizer(config)
  assert "answer_id" not in batch and "answer_id" not in mmdata.element_spec(config)
  assert set(batch["question_type"]) == {shapes.TRAINING_QUESTION_TYPES.index("where")}
  for row, objects in enumerate(preprocess.batch_scenes(batch)):
    described = tokenizer.decode(batch["question"][row]).removeprefix("what cell is the ").removesuffix(" in ?")
    [obj] = [o for o in objects if shapes.describe(o) == described]
    assert tokenizer.decode(batch["answer"][row]) == f"{shapes._ROWS[obj.row]} {shapes._COLUMNS[obj.col]}"
  assert "answer_id" in mmdata.element_spec(_with(config, question_type_weights=(1, 1, 1, 1, 4, 0)))
  for weights in [(1, 1, 1), (1, 1, 1, 1, -1), (0, 0, 0, 0, 0)]:
    with pytest.raises(errors.ConfigError, match=r"config.data.question_type_weights=.* one weight ≥ 0 per "):
      mmdata.element_spec(_with(config, question_type_weights=weights))


@pytest.mark.parametrize("worker_count,hard_negatives,fresh_questions",
                         [(0, False, False), (2, False, False), (0, True, True)])
def test_restored_loader_continues_with_the_next_batch(data_config, worker_count, hard_negatives, fresh_questions):
  config = _config(data_config.data_dir, worker_count=worker_count, hard_negatives=hard_negatives,
                   fresh_questions=fresh_questions)
  loader = mmdata.train_loader(config, batch_size=32, seed=7)
  _take(loader, 3)
  state = json.loads(json.dumps(loader.get_state()))
  expected = _take(loader, 2)

  restored = mmdata.train_loader(config, batch_size=32, seed=7)
  restored.set_state(state)
  for a, b in zip(expected, _take(restored, 2)):
    _assert_batches_equal(a, b)


def test_loader_state_carries_over_to_another_process_count(data_config, monkeypatch):
  """Process 1 of 2 saves its state after 3 global batches of 32; each process of 1, 2 or 4 restores it and together
  they read global batches 4 and 5 exactly as one process reading on would (mmjax.data.loader_state)."""
  def loader(index: int, count: int):
    monkeypatch.setattr(jax, "process_index", lambda: index)
    monkeypatch.setattr(jax, "process_count", lambda: count)
    return mmdata.train_loader(data_config, batch_size=32 // count, seed=7)

  expected = _take(loader(0, 1), 5)[3:]
  saved = loader(1, 2)
  _take(saved, 3)
  state = json.loads(json.dumps(saved.get_state()))
  for count in (1, 2, 4):
    parts = []
    for index in range(count):
      restored = loader(index, count)
      restored.set_state(state)
      parts.append(_take(restored, 2))
    for position, batch in enumerate(expected):
      _assert_batches_equal(batch, {key: np.concatenate([part[position][key] for part in parts]) for key in batch})


def test_eval_batches_cover_the_split_once_in_order(data_config, captions):
  batches = list(mmdata.eval_batches(data_config, "test", batch_size=100))
  assert len(batches) == 6
  for batch in batches:
    assert set(batch) == EVAL_FIELDS
    assert batch["image"].shape == (100, 48, 48, 3) and batch["valid"].dtype == bool
  assert [int(b["valid"].sum()) for b in batches] == [100] * 5 + [12]
  assert list(batches[-1]["valid"]) == [True] * 12 + [False] * 88
  got = [str(c) for b in batches for c, v in zip(b["caption"], b["valid"]) if v]
  assert got == captions["test"]

  last = batches[-1]
  assert all(isinstance(c, str) for c in last["caption"])
  assert (last["image"][12:] == 0).all() and (last["text"][12:] == 0).all()
  assert (last["caption"][12:] == "").all() and (last["question_text"][12:] == "").all()
  tokenizer = mmdata.get_tokenizer(data_config)
  assert [tokenizer.decode(t) for t in last["text"][:12]] == list(last["caption"][:12])


def test_eval_batches_shard_over_processes(data_config, captions, monkeypatch):
  monkeypatch.setattr(jax, "process_count", lambda: 3)
  per_process = []
  for index in range(3):
    monkeypatch.setattr(jax, "process_index", lambda index=index: index)
    per_process.append(list(mmdata.eval_batches(data_config, "test[:250]", batch_size=83)))
  # 250 examples over 3 processes: shards of 83, 83, 84, so 2 batches each; the
  # first two processes pad with a batch that has no valid row.
  assert [len(batches) for batches in per_process] == [2, 2, 2]
  assert [[int(b["valid"].sum()) for b in batches] for batches in per_process] == [[83, 0], [83, 0], [83, 1]]
  got = [str(c) for batches in per_process for b in batches for c, v in zip(b["caption"], b["valid"]) if v]
  assert got == captions["test"][:250]


def test_unknown_and_empty_splits_are_clear_errors(data_config):
  with pytest.raises(ValueError, match=r"Unknown split 'validation'.*\['heldout', 'test', 'train'\]"):
    mmdata.num_examples(data_config, "validation")
  with pytest.raises(ValueError, match="Unknown split"):
    mmdata.eval_batches(data_config, "valid", batch_size=8)
  with pytest.raises(ValueError, match="no examples"):
    mmdata.eval_batches(data_config, "test[:0]", batch_size=8)


def test_unknown_dataset_or_variant_lists_the_known_ones(shapes_data_dir):
  with pytest.raises(ValueError,
                     match=r"Unknown dataset 'circles'.*\['av_digits', 'fashion_mnist', 'folder', .*'tfds'\]"):
    mmdata.prepare(_config(shapes_data_dir, name="circles"))
  with pytest.raises(ValueError, match=r"Unknown variant 'tiny'.*\['default', 'small'\]"):
    mmdata.prepare(_config(shapes_data_dir, variant="tiny"))


def test_too_short_text_len_fails_loudly(data_config):
  config = _config(data_config.data_dir, text_len=6)
  with pytest.raises(ValueError, match="text_len"):
    next(mmdata.train_loader(config, batch_size=64, seed=0))


def test_indexed_source_repr_is_its_sources_not_an_address():
  """A loader state stores its source's repr and a restore compares it: an address would refuse every resume of a
  run with precomputed image features in a new process."""
  first, second = features.IndexedSource([{"a": 1}]), features.IndexedSource([{"a": 1}])
  assert repr(first) == repr(second) == "IndexedSource([{'a': 1}])"


@pytest.mark.parametrize("dataset", ["shapes", "moving_shapes"])
def test_train_split_held_in_memory_gives_the_same_batches_and_states(dataset, shapes_data_dir,
                                                                      moving_shapes_data_dir):
  """A memory_cache_mb above the split's size holds the small train split in memory (Shapes' PNGs decoded once);
  0 (smoke configs' default) reads every batch from disk. Past an epoch's end (2,048 or 384 train records) the two
  loaders agree on every batch and state, and each restores the other's state; a budget below the split's size
  keeps it on disk."""
  if dataset == "shapes":
    data = _config(shapes_data_dir, hard_negatives=True, memory_cache_mb=common.MEMORY_CACHE_MB)
  else:
    data = common.moving_shapes_data(smoke=True)
    data.update(data_dir=moving_shapes_data_dir, memory_cache_mb=common.MEMORY_CACHE_MB)
  builder = mmdata.prepare(data)
  disk_source = pipeline._data_source(builder, "train", data)
  held = registry.dataset(data).train_source(disk_source, builder, data, "train")
  assert isinstance(held, batch_reader.InMemoryColumns) and repr(held) == repr(disk_source)
  if dataset == "shapes":
    assert held.column("image").dtype == np.uint8 and held.column("image").shape == (len(disk_source), 48, 48, 3)
  stored_mb = builder.info.splits["train"].num_bytes / 2**20
  assert registry.dataset(data).train_source(disk_source, builder, _with(data, memory_cache_mb=int(stored_mb / 2)),
                                             "train") is disk_source
  batch_size = 128 if dataset == "shapes" else 48
  memory = mmdata.train_loader(data, batch_size=batch_size, seed=5)
  disk = mmdata.train_loader(_with(data, memory_cache_mb=0), batch_size=batch_size, seed=5)
  for _ in range(len(disk_source) // batch_size + 2):
    _assert_batches_equal(next(memory), next(disk))
    assert memory.get_state() == disk.get_state()
  restored = mmdata.train_loader(_with(data, memory_cache_mb=0), batch_size=batch_size, seed=5)
  restored.set_state(memory.get_state())
  _assert_batches_equal(next(restored), next(memory))
