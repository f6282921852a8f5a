"""Folder datasets: manifests, their errors, the cached build, splits and preprocessing (mmjax.data.folder)."""
import io
import json
import os

import grain
import ml_collections
import numpy as np
import pytest
import soundfile
from PIL import Image

from configs import common
from mmjax import data as mmdata
from mmjax import errors
from mmjax.data import batch_reader, folder, photos, pipeline
from mmjax.data.sampler import GlobalBatchSampler


def _photo(path, size=(60, 40), colour=(200, 30, 30), fmt=None):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  pixels = np.zeros((size[1], size[0], 3), np.uint8) + np.asarray(colour, np.uint8)
  pixels[: size[1] // 2, : size[0] // 2] = 255 - pixels[0, 0]  # A corner, so crops and flips differ.
  Image.fromarray(pixels).save(path, format=fmt)


def _folder(tmp_path, rows, name="manifest.jsonl", photos_for=None):
  root = tmp_path / "folder"
  for index in range(photos_for if photos_for is not None else len(rows)):
    _photo(str(root / f"img{index}.png"))
  root.mkdir(exist_ok=True)
  with open(root / name, "w") as f:
    for row in rows:
      f.write((row if isinstance(row, str) else json.dumps(row)) + "\n")
  return root


def _data(root, tmp_path, **overrides):
  return common.folder_data(path=str(root), data_dir=str(tmp_path / "tfds"), **{"image_size": 32, "text_len": 8,
                                                                                **overrides})


def _rows(count, **extra):
  return [{"image": f"img{i}.png", "caption": f"a red square number {i}", "label": "odd" if i % 2 else "even",
           **extra} for i in range(count)]


def _prepare_error(tmp_path, rows, **overrides):
  root = _folder(tmp_path, rows)
  with pytest.raises(errors.UserError) as raised:
    mmdata.prepare(_data(root, tmp_path, **overrides))
  return str(raised.value)


BAD_MANIFESTS = {
    "not_json": (["this is not json"], "manifest.jsonl line 1 is not JSON"),
    "unknown_field": ([{"image": "img0.png", "captoin": "x"}], "manifest.jsonl:1: unknown field(s) ['captoin']"),
    "empty_caption": ([*_rows(3), {"image": "img0.png", "caption": " "}], "manifest.jsonl:4: has an empty caption"),
    "missing_image": ([*_rows(2), {"image": "nope.jpg", "caption": "x", "label": "odd"}],
                      "manifest.jsonl:3: image"),
    "missing_field": ([*_rows(2), {"image": "img0.png", "caption": "x"}],
                      "manifest.jsonl:3: has fields ['captions', 'image'] but manifest.jsonl:1"),
    "bad_json_line": ([*_rows(2), '{"image": "img0.png",'], "manifest.jsonl:3: is not valid JSON"),
    "duplicate_id": ([{**row, "id": "same"} for row in _rows(2)], "manifest.jsonl:2: repeats id 'same'"),
    "not_an_object": ([*_rows(1), "[1, 2]"], "manifest.jsonl:2: is a JSON list"),
}


@pytest.mark.parametrize("case", sorted(BAD_MANIFESTS))
def test_a_bad_manifest_is_one_error_naming_the_file_and_line(case, tmp_path):
  rows, expected = BAD_MANIFESTS[case]
  message = _prepare_error(tmp_path, rows)
  assert expected in message
  assert "\n" not in message


def test_a_broken_image_and_an_unknown_label_are_named(tmp_path):
  root = _folder(tmp_path, _rows(4))
  (root / "img1.png").write_bytes(b"not a png")
  png = io.BytesIO()
  Image.new("RGB", (50, 50)).save(png, format="PNG")
  (root / "img2.png").write_bytes(png.getvalue()[:60])  # Truncated.
  with pytest.raises(errors.InputError) as raised:
    mmdata.prepare(_data(root, tmp_path, label_names="even"))
  message = str(raised.value)
  assert "3 bad manifest row(s)" in message
  assert "manifest.jsonl:2: image" in message and "img1.png is not in an image format PIL reads" in message
  assert "manifest.jsonl:3: image" in message
  assert "manifest.jsonl:4: label 'odd' is not one of config.data.label_names ['even']" in message
  assert "skip_bad_rows=True" in message


def test_skip_bad_rows_counts_and_reports_them(tmp_path):
  root = _folder(tmp_path, [*_rows(6), {"image": "gone.png", "caption": "x", "label": "odd"}])
  builder = mmdata.prepare(_data(root, tmp_path, skip_bad_rows=True, split_ratio="train=0.5,test=0.5"))
  metadata = builder.info.metadata
  assert metadata["num_bad_rows"] == 1
  assert metadata["bad_rows"] == [f"manifest.jsonl:7: image {root}/gone.png does not exist"]
  assert builder.info.splits["train"].num_examples + builder.info.splits["test"].num_examples == 6


def test_a_split_ratio_that_leaves_a_split_empty_is_an_error(tmp_path):
  message = _prepare_error(tmp_path, _rows(2), split_ratio="train=0.9,test=0.1")
  assert "leaves split(s) ['test'] with no examples" in message


def test_csv_manifest_and_one_file_per_split(tmp_path):
  root = tmp_path / "folder"
  for index in range(4):
    _photo(str(root / f"img{index}.jpg"), fmt="JPEG")
  (root / "train.csv").write_text("image,captions,label\nimg0.jpg,a cat | a kitten,cat\nimg1.jpg,a dog,dog\n"
                                  "img2.jpg,a cat,cat\n")
  (root / "test.csv").write_text("image,captions,label\nimg3.jpg,a dog,dog\n")
  data = _data(root, tmp_path, manifest="train=train.csv,test=test.csv")
  builder = mmdata.prepare(data)
  assert {s: builder.info.splits[s].num_examples for s in ("train", "test")} == {"train": 3, "test": 1}
  assert mmdata.label_names(data)["label"] == ["cat", "dog"]
  first = builder.as_data_source("train")[0]
  assert [c.decode() for c in first["captions"]] == ["a cat", "a kitten"]
  assert first["source"].decode() == "train.csv:2"


def test_splits_by_ratio_are_seeded_and_the_build_is_cached_until_the_manifest_changes(tmp_path):
  root = _folder(tmp_path, _rows(10))
  announced = []
  data = _data(root, tmp_path, split_ratio="train=0.7,test=0.3")
  builder = mmdata.prepare(data, announce=announced.append)
  test_ids = sorted(r["id"].decode() for r in builder.as_data_source("test"))
  assert len(test_ids) == 3 and len(announced) == 2  # "Generating ..." and "Generated ...".
  assert mmdata.prepare(data, announce=announced.append).data_dir == builder.data_dir
  assert len(announced) == 2  # Unchanged folder: not built again.
  with open(root / "manifest.jsonl", "a") as f:
    f.write(json.dumps({"image": "img0.png", "caption": "another", "label": "even", "id": "extra"}) + "\n")
  rebuilt = mmdata.prepare(data, announce=announced.append)
  assert rebuilt.data_dir != builder.data_dir and len(announced) == 4
  other_seed = mmdata.prepare(_data(root, tmp_path, split_ratio="train=0.7,test=0.3", split_seed=1))
  assert sorted(r["id"].decode() for r in other_seed.as_data_source("test")) != test_ids


def test_metadata_vocabulary_answers_and_text_lengths(tmp_path):
  rows = [{"image": "img0.png", "caption": "A red square.", "question": "what colour?", "answer": "Red.",
           "question_type": "colour", "split": "train"},
          {"image": "img1.png", "caption": "a red square", "question": "what shape?", "answer": "square",
           "split": "train"},
          {"image": "img2.png", "caption": "a green triangle right here", "question": "what colour?", "answer": "green",
           "question_type": "colour", "split": "test"}]
  root = _folder(tmp_path, rows)
  data = _data(root, tmp_path)
  metadata = mmdata.prepare(data).info.metadata
  assert metadata["answers"] == ["red", "square"]
  assert metadata["question_types"] == ["all", "colour"]
  # By frequency in the train split's text (captions, questions, answers), ties alphabetical; test text unseen.
  assert metadata["vocab"] == ["red", "square", ".", "?", "a", "what", "colour", "shape"]
  assert metadata["longest"]["captions"] == [5, "manifest.jsonl:3"]
  data.text_len = 5
  with pytest.raises(errors.ConfigError, match=r"\(manifest.jsonl:3\) has 5 words; with eos it needs "
                                               r"config.data.text_len=6"):
    mmdata.element_spec(data)
  data.text_len = 8
  batch = next(mmdata.eval_batches(data, "test", batch_size=2))
  assert batch["answer_id"][0] == -1  # "green" was never a train answer.
  assert batch["question_type"][0] == 1 and batch["id"][0] == "img2.png"


def test_eval_images_are_the_centre_crop_and_train_images_are_random_crops(tmp_path):
  root = _folder(tmp_path, _rows(2))
  data = _data(root, tmp_path, image_mean=(0.5, 0.25, 0.0), image_std=(0.5, 0.5, 1.0))
  batch = next(mmdata.eval_batches(data, "train", batch_size=2))
  photo = np.asarray(Image.open(root / "img0.png").convert("RGB"))
  expected = photos.normalize(photos.center_crop(photo, 32, 0.875), (127.5, 63.75, 0.0), (127.5, 127.5, 255.0))
  np.testing.assert_allclose(batch["image"][0], expected, atol=1e-6)
  assert batch["caption_refs"].shape == (2, 1, 8) and batch["caption"][0] == "a red square number 0"
  np.testing.assert_allclose(mmdata.photo_input(data)(photo), expected, atol=1e-6)
  loader = mmdata.train_loader(data, batch_size=2, seed=0)
  crops = [next(loader)["image"] for _ in range(4)]
  assert crops[0].shape == (2, 32, 32, 3)
  assert any(not np.allclose(c, expected) for c in np.concatenate(crops))


def _example_train_data(tmp_path, **overrides):
  """18 train and 6 test rows of the example folder (PNG and JPEG, 28–96 pixels a side), 16-pixel crops."""
  folder.write_example_folder(str(tmp_path / "digits"), count=24)
  return _data(tmp_path / "digits", tmp_path, split_ratio="train=0.75,test=0.25", text_len=8, answer_len=3,
               image_size=16, image_mean=(0.5, 0.25, 0.0), image_std=(0.5, 0.5, 1.0), **overrides)


def test_train_batches_from_memory_are_grains_per_example_batches(tmp_path):
  """The train loader holds the small split in memory with its images decoded, crops a batch's images and
  normalises them at once (PreprocessFolder.random_map_batch): its batches, across an epoch's end, and its states
  are grain.DataLoader's reading each record from disk through the per-example `random_map`; each restores the
  other's state."""
  data = _example_train_data(tmp_path)
  loader = mmdata.train_loader(data, batch_size=4, seed=3)
  memory = loader._iterator._source
  assert isinstance(memory, batch_reader.InMemoryColumns) and isinstance(memory.column("image")[0], Image.Image)

  def grain_loader():
    builder = mmdata.prepare(data)
    source = pipeline._data_source(builder, "train", data)
    sampler = GlobalBatchSampler(len(source), global_batch_size=4, seed=3,
                                 shard_options=grain.sharding.ShardByJaxProcess(drop_remainder=True))
    operations = [*pipeline._operations(builder, data, True, "train"), grain.transforms.Batch(4, drop_remainder=True)]
    return iter(grain.DataLoader(data_source=source, sampler=sampler, operations=operations, worker_count=0))

  expected = grain_loader()
  for _ in range(6):  # 18 train records: the fifth batch ends the first epoch and starts the second.
    want, got = next(expected), next(loader)
    assert set(want) == set(got) == {"image", "text", "question", "answer", "answer_id", "question_type", "label"}
    for key in want:
      assert want[key].dtype == got[key].dtype and np.array_equal(want[key], got[key]), key
    assert loader.get_state() == json.loads(expected.get_state())
  restored = grain_loader()
  restored.set_state(json.dumps(loader.get_state()).encode())
  np.testing.assert_array_equal(next(restored)["image"], next(loader)["image"])
  reader = mmdata.train_loader(data, batch_size=4, seed=3)
  reader.set_state(json.loads(expected.get_state()))
  np.testing.assert_array_equal(next(expected)["image"], next(reader)["image"])


@pytest.mark.parametrize("budget_mb,held", [(0, "nothing"), (0.1, "records"), (1024, "images")])
def test_the_train_split_is_held_in_memory_within_memory_cache_mb(tmp_path, budget_mb, held):
  """18 records of ~2 kB fit in 0.1 MB, not their ~0.3 MB of decoded pixels; 0 keeps nothing in memory."""
  data = _example_train_data(tmp_path, memory_cache_mb=budget_mb)
  builder = mmdata.prepare(data)
  disk = pipeline._data_source(builder, "train", data)
  source = folder.train_source(disk, builder, data, "train")
  if held == "nothing":
    assert source is disk
    return
  assert isinstance(source, batch_reader.InMemoryColumns) and repr(source) == repr(disk)
  image = source.column("image")[5]
  assert isinstance(image, Image.Image if held == "images" else bytes)
  np.testing.assert_array_equal(np.asarray(image) if held == "images" else photos.decode(image),
                                photos.decode(disk[5]["image"]))


def test_images_are_stored_at_twice_the_image_size_unless_set(tmp_path):
  """store_short_side follows image_size (a new build when it changes); set, it stays; 0 stores the files."""
  root = _folder(tmp_path, _rows(2))  # 60×40 PNGs.

  def stored(data) -> Image.Image:
    return Image.open(io.BytesIO(mmdata.prepare(data).as_data_source("train")[0]["image"]))

  data = _data(root, tmp_path, image_size=8)
  assert data.store_short_side == 16 and stored(data).size == (24, 16) and stored(data).format == "JPEG"
  data.image_size = 32
  assert data.store_short_side == 64 and stored(data).size == (60, 40) and stored(data).format == "PNG"
  assert stored(_data(root, tmp_path, image_size=8, store_short_side=0)).size == (60, 40)
  assert stored(_data(root, tmp_path, image_size=8, store_short_side=20)).size == (30, 20)


def test_audio_is_resampled_to_the_configured_rate(tmp_path):
  root = tmp_path / "folder"
  root.mkdir()
  rate, seconds = 8_000, 0.5
  t = np.arange(int(rate * seconds)) / rate
  soundfile.write(root / "tone.wav", 0.5 * np.sin(2 * np.pi * 440 * t), rate)
  (root / "bad.wav").write_bytes(b"RIFF....WAVE")
  rows = [{"audio": "tone.wav", "label": "a"}]
  (root / "manifest.jsonl").write_text("\n".join(json.dumps(row) for row in rows))
  data = _data(root, tmp_path, sample_rate=16_000, audio_seconds=1.0)
  assert mmdata.sample_rate(data) == 16_000
  audio = next(mmdata.eval_batches(data, "train", batch_size=1))["audio"][0]
  assert audio.shape == (16_000,) and not audio[8_100:].any()
  spectrum = np.abs(np.fft.rfft(audio[:8_000]))
  assert abs(np.argmax(spectrum) * 16_000 / 8_000 - 440) <= 2
  (root / "manifest.jsonl").write_text(json.dumps({"audio": "bad.wav", "label": "a"}))
  with pytest.raises(errors.InputError, match="manifest.jsonl:1: audio .*bad.wav is not an audio file"):
    mmdata.prepare(data)


def test_example_folder_builds_with_every_field(tmp_path):
  folder.write_example_folder(str(tmp_path / "digits"), count=20)
  data = _data(tmp_path / "digits", tmp_path, split_ratio="train=0.5,test=0.5", text_len=8, answer_len=3)
  spec = mmdata.element_spec(data)
  assert {"image", "text", "question", "answer", "answer_id", "question_type", "label"} <= set(spec)
  assert mmdata.label_names(data)["question_type"] == ["colour", "digit"]


def test_a_missing_folder_is_a_config_error(tmp_path):
  with pytest.raises(errors.ConfigError, match="config.data.path='/no/such' is not a folder"):
    mmdata.prepare(ml_collections.ConfigDict(common.folder_data(path="/no/such", data_dir=str(tmp_path))))
