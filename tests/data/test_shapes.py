"""The Shapes scene grammar, renderer and tfds builder."""
import collections
import io
import pathlib

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from mmjax.data import shapes
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


def test_metadata_vocab_is_exactly_the_caption_words(small_builder, small_records):
  metadata = small_builder.info.metadata
  caption_words = {word for r in small_records["train"] for word in r["caption"].decode().split()}
  assert metadata["vocab"] == sorted(caption_words)
  assert (metadata["shapes"], metadata["colours"], metadata["sizes"]) == (
      list(shapes.SHAPES), list(shapes.COLOURS), list(shapes.SIZES))


def test_records_are_generate_example_in_order(small_records):
  for split in SPLITS:
    for index in (0, 1, 511):
      expected = shapes.generate_example(split, index, image_size=48)
      record = small_records[split][index]
      assert record["image"] == expected["image"]
      assert record["caption"].decode() == expected["caption"]
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
