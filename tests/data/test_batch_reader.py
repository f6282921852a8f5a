"""mmjax.data.batch_reader: the training loader's batches and state are grain.DataLoader's (no workers), a checkpoint
of either restores in the other, and each preprocessing op's batch form equals its per-example form."""
import io
import json

import grain
import jax
import numpy as np
import pytest
from PIL import Image

from configs import common
from mmjax import data as mmdata
from mmjax.data import av_digits, batch_reader, pipeline, preprocess, shapes
from mmjax.data.sampler import GlobalBatchSampler
from mmjax.data import tokenizer as tokenizer_lib


def _grain_loader(data_config, batch_size: int, seed: int):
  """The loader as it was built before the batch reader: grain's DataLoader over the same source and sampler."""
  builder = mmdata.prepare(data_config)
  source = pipeline._data_source(builder, "train", data_config)
  sampler = GlobalBatchSampler(len(source), global_batch_size=batch_size * jax.process_count(), seed=seed,
                                        shard_options=grain.sharding.ShardByJaxProcess(drop_remainder=True))
  operations = pipeline._operations(builder, data_config, True, "train")
  return iter(grain.DataLoader(data_source=source, sampler=sampler, worker_count=0,
                               operations=[*operations, grain.transforms.Batch(batch_size, drop_remainder=True)]))


def _assert_equal(expected: dict, got: dict) -> None:
  assert set(expected) == set(got)
  for key in expected:
    assert expected[key].dtype == got[key].dtype and np.array_equal(expected[key], got[key]), key


@pytest.fixture(params=["shapes", "av_digits"])
def data_config(request, shapes_data_dir, av_digits_data_dir):
  """Each dataset with its random training op: Shapes' hard negatives; AV-Digits' augmentation (its train split
  held in memory)."""
  if request.param == "shapes":
    config = common.shapes_data(smoke=True, text_len=24, hard_negatives=True)
    config.data_dir = shapes_data_dir
    return config
  config = common.av_digits_data(variant="redundant", smoke=True)
  config.update(data_dir=av_digits_data_dir, image_shift=2, audio_stretch=0.15)
  return config


@pytest.mark.parametrize("process", [(0, 1), (1, 2)])
def test_batches_and_state_are_grain_data_loaders(data_config, process, monkeypatch):
  """Process `index` of `count`: the same three batches and the same state after each; grain restores the
  reader's state and the reader grain's, each continuing with the same next batch."""
  index, count = process
  monkeypatch.setattr(jax, "process_index", lambda: index)
  monkeypatch.setattr(jax, "process_count", lambda: count)
  reader, grain_iterator = mmdata.train_loader(data_config, batch_size=8, seed=3), _grain_loader(data_config, 8, 3)
  assert isinstance(reader._iterator, batch_reader.BatchReader)
  for _ in range(3):
    _assert_equal(next(grain_iterator), next(reader))
    assert reader.get_state() == json.loads(grain_iterator.get_state())
  state = reader.get_state()
  expected = next(reader)
  restored_grain = _grain_loader(data_config, 8, 3)
  restored_grain.set_state(json.dumps(state).encode())
  _assert_equal(expected, next(restored_grain))
  restored_reader = mmdata.train_loader(data_config, batch_size=8, seed=3)
  restored_reader.set_state(json.loads(grain_iterator.get_state()))
  _assert_equal(expected, next(restored_reader))


def test_in_memory_columns_are_the_collated_records(av_digits_data_dir):
  config = common.av_digits_data(variant="redundant", smoke=True)
  config.data_dir = av_digits_data_dir
  source = pipeline._data_source(mmdata.prepare(config), "train", config)
  columns = batch_reader.InMemoryColumns(source, chunk=100)  # Three chunks of the 256 records.
  keys = [255, 0, 7, 7]
  _assert_equal(batch_reader.collate(source.__getitems__(keys)), columns.columns(keys))
  assert repr(columns) == repr(source) and len(columns) == len(source) == 256


def _png(pixels: list) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(np.array(pixels, dtype=np.uint8)).save(buffer, format="PNG")
  return buffer.getvalue()


def _labels(objects: list[tuple[int, int, int, int, int]]) -> dict:
  """The label fields of a record with these (shape, colour, size, row, col) objects, padded with -1 to 3."""
  rows = [*objects, *[(-1,) * 5] * (3 - len(objects))]
  return {"num_objects": len(objects),
          **{field: np.array([row[i] for row in rows]) for i, field in enumerate(shapes.SceneObject._fields)}}


def test_shapes_batch_forms_equal_the_per_example_ones():
  """Two hand-made records: pixels 0, 255 and 51 map to -1, 1 and -0.6, the words to their ids; `map` of each
  record is its row of `map_batch`, and the hard negatives drawn per row from the same seeds are the same."""
  tokenizer = tokenizer_lib.WordTokenizer(shapes.VOCAB)
  records = [
      {"image": _png([[[0, 255, 51], [255, 255, 255]]]), "caption": b"a small red circle",
       "question": b"what colour is the circle", "answer": b"red", "question_type": 1,
       **_labels([(0, 0, 0, 1, 1)])},
      {"image": _png([[[255, 0, 0], [51, 51, 51]]]), "caption": b"a large blue square left of a small red circle",
       "question": b"how many objects are there", "answer": b"two", "question_type": 0,
       **_labels([(1, 2, 1, 0, 0), (0, 0, 0, 0, 2)])},
  ]
  operation = preprocess.PreprocessExample(tokenizer, shapes.ANSWERS, text_len=12, question_len=8, answer_len=2)
  batch = operation.map_batch(batch_reader.collate(records))
  np.testing.assert_allclose(batch["image"][0], [[[-1.0, 1.0, -0.6], [1.0, 1.0, 1.0]]], rtol=1e-6)
  assert batch["image"].dtype == np.float32 and batch["image"].shape == (2, 1, 2, 3)
  words = "a small red circle".split()
  assert list(batch["text"][0]) == [*(tokenizer.encode(word)[0] for word in words), tokenizer.eos_id] + [0] * 7
  assert list(batch["answer_id"]) == [shapes.ANSWERS.index("red"), shapes.ANSWERS.index("two")]
  assert list(batch["question_type"]) == [1, 0] and list(batch["num_objects"]) == [1, 2]
  for row, record in enumerate(records):
    _assert_equal({key: np.asarray(value) for key, value in operation.map(record).items()},
                  {key: value[row] for key, value in batch.items()})

  negatives = preprocess.AddHardNegative(tokenizer, text_len=12)
  batched = negatives.random_map_batch(batch, [np.random.default_rng(seed) for seed in (1, 2)])
  for row, seed in enumerate((1, 2)):
    example = negatives.random_map({key: value[row] for key, value in batch.items()}, np.random.default_rng(seed))
    np.testing.assert_array_equal(example["negative_text"], batched["negative_text"][row])
  assert tokenizer.decode(batched["negative_text"][0]) == "a large red circle"  # One object: its size changes.


def test_av_digits_batch_form_equals_the_per_example_one():
  """Pixels 0/255 → -1/1, samples -32768/16384 → -1/0.5, the text to its character ids; `map` of each record is its
  row of `map_batch`."""
  tokenizer = tokenizer_lib.CharTokenizer(av_digits.CHARS)
  flags = ("label", "image_digit", "audio_digit", "text_digit", "image_heavy", "audio_heavy", "text_heavy")
  records = [{"image": np.full((28, 28, 1), value, np.uint8), "audio": np.array(audio, np.int16), "text": text,
              **{field: label for field in flags}}
             for value, audio, text, label in ((0, [-32768, 16384], b"two", 2), (255, [0, 32767], b"nine", 9))]
  operation = av_digits.PreprocessAvDigits(tokenizer, text_len=6, keep_text=True)
  batch = operation.map_batch(batch_reader.collate(records))
  assert (batch["image"][0] == -1).all() and (batch["image"][1] == 1).all()
  np.testing.assert_array_equal(batch["audio"], np.array([[-1.0, 0.5], [0.0, 32767 / 32768]], np.float32))
  assert list(batch["text"][0]) == [*tokenizer.encode("two"), tokenizer.eos_id, 0, 0]
  assert list(batch["text_string"]) == ["two", "nine"] and list(batch["label"]) == [2, 9]
  for row, record in enumerate(records):
    example = operation.map(record)
    assert example["text_string"] == batch["text_string"][row]
    _assert_equal({key: np.asarray(value) for key, value in example.items() if key != "text_string"},
                  {key: value[row] for key, value in batch.items() if key != "text_string"})


def test_an_op_without_a_batch_form_runs_per_example():
  """An op with `map` only (as Fashion-MNIST's) is applied to each record, then the
  examples are stacked: batches are consecutive records of the sampler's order."""
  class Double(grain.transforms.Map):
    def map(self, element):
      return {"x": element["x"] * 2}

  class Identity:
    def record_keys(self, indices):
      return list(indices)

  class Source(list):
    def __getitems__(self, keys):
      return [self[key] for key in keys]

  source = Source({"x": np.array([i, -i])} for i in range(6))
  reader = batch_reader.BatchReader(source, Identity(), [Double()], 3, grain.sharding.NoSharding())
  np.testing.assert_array_equal(next(reader)["x"], [[0, 0], [2, -2], [4, -4]])
  np.testing.assert_array_equal(next(reader)["x"], [[6, -6], [8, -8], [10, -10]])
  assert reader.get_state()["last_seen_indices"] == {"0": 5}


def test_a_class_subsets_state_restores_in_a_new_loader(av_digits_data_dir):
  """With config.data.classes the loader reads a ClassSubset, whose repr the state holds and a restored loader
  checks: it names the source and the classes, so a new loader (a resumed run) continues with the next batch."""
  config = common.av_digits_data(variant="redundant", smoke=True)
  config.data_dir = av_digits_data_dir
  with config.unlocked():
    config.classes = "zero,one,two"
  loader = mmdata.train_loader(config, batch_size=8, seed=1)
  next(loader)
  state = json.loads(json.dumps(loader.get_state()))
  assert "label in ['zero', 'one', 'two']" in state["data_source"]
  expected = next(loader)
  restored = mmdata.train_loader(config, batch_size=8, seed=1)
  restored.set_state(state)
  _assert_equal(expected, next(restored))
  assert set(expected["label"]) <= {0, 1, 2}
