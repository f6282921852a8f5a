"""Fashion-MNIST from local idx files: the builder, its checks of the files, preprocessing and class subsets.

The tests write small idx.gz files of their own (the real ones come from Debian's dataset-fashion-mnist)."""
import gzip
import struct

import ml_collections
import numpy as np
import pytest

from mmjax import data as mmdata
from mmjax import errors
from mmjax.data import fashion_mnist
from mmjax.data.tokenizer import tokenize_to_length

COUNTS = {"train": 40, "test": 20}


def write_idx_files(folder, counts=COUNTS, seed=0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Random images and cycling labels as the four idx.gz files of Fashion-MNIST; returns them per split."""
  rng = np.random.default_rng(seed)
  written = {}
  for split, count in counts.items():
    images_file, labels_file, _ = fashion_mnist.FILES[split]
    images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
    labels = (np.arange(count) % 10).astype(np.uint8)
    with gzip.open(folder / images_file, "wb") as f:
      f.write(struct.pack(">IIII", 2051, count, 28, 28) + images.tobytes())
    with gzip.open(folder / labels_file, "wb") as f:
      f.write(struct.pack(">II", 2049, count) + labels.tobytes())
    written[split] = (images, labels)
  return written


def data_config(source_dir, data_dir, **overrides) -> ml_collections.ConfigDict:
  from configs import fashion_lit

  config = fashion_lit.get_config("smoke").data
  config.unlock()
  config.image_features = None  # The images themselves (tests/trainer/test_lit.py covers precomputed features).
  config.update(dict(source_dir=str(source_dir), data_dir=str(data_dir), **overrides))
  return config


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
  source = tmp_path_factory.mktemp("fashion_source")
  written = write_idx_files(source)
  config = data_config(source, tmp_path_factory.mktemp("fashion_data"), classes="")
  mmdata.prepare(config)
  return config, written


def test_the_builder_stores_every_image_and_label_in_order(prepared):
  config, written = prepared
  builder = mmdata.prepare(config)
  for split, (images, labels) in written.items():
    source = builder.as_data_source(split)
    assert len(source) == len(images)
    np.testing.assert_array_equal(np.stack([source[i]["image"] for i in range(len(source))]), images)
    np.testing.assert_array_equal([source[i]["label"] for i in range(len(source))], labels)
  assert mmdata.label_names(config) == {"label": list(fashion_mnist.CLASS_NAMES)}


def test_training_examples_are_upscaled_normalised_and_captioned_from_the_class_name(prepared):
  config, written = prepared
  tokenizer = mmdata.get_tokenizer(config)
  batch = next(mmdata.train_loader(config, batch_size=8, seed=0))
  assert batch["image"].shape == (8, config.image_size, config.image_size, 3)
  assert batch["image"].dtype == np.float32
  # Grey: the three channels are equal; normalised: (x/255 − 0.498) / 0.502 spans about [−1, 1].
  np.testing.assert_array_equal(batch["image"][..., 0], batch["image"][..., 2])
  assert -1.0 <= batch["image"].min() < -0.9 and 0.9 < batch["image"].max() <= 1.0
  for tokens, label in zip(batch["text"], batch["label"]):
    name = fashion_mnist.CLASS_NAMES[label]
    assert any(np.array_equal(tokens, tokenize_to_length(tokenizer, t.format(name), config.text_len))
               for t in config.templates), (tokenizer.decode(tokens), name)


def test_upscaling_matches_pil_bilinear_and_the_checkpoint_normalisation():
  image = np.arange(28 * 28, dtype=np.uint8).reshape(28, 28)
  out = fashion_mnist.upscale_grey(image, 56, (0.5,) * 3, (0.25,) * 3)
  from PIL import Image
  expected = (np.asarray(Image.fromarray(image).resize((56, 56), Image.BILINEAR), np.float32) / 255 - 0.5) / 0.25
  np.testing.assert_allclose(out[..., 1], expected, rtol=1e-6)


def test_a_class_subset_keeps_only_those_classes_in_order(prepared):
  config, written = prepared
  subset = data_config(config.source_dir, config.data_dir, classes="bag,trouser")
  batches = list(mmdata.eval_batches(subset, "test", batch_size=4))
  labels = np.concatenate([b["label"][b["valid"]] for b in batches])
  expected = written["test"][1][np.isin(written["test"][1], [1, 8])]
  np.testing.assert_array_equal(labels, expected)
  assert mmdata.num_examples(subset, "test") == 20  # The split's own size; the subset is a view.
  with pytest.raises(errors.ConfigError, match="'boots'.*its classes"):
    list(mmdata.eval_batches(data_config(config.source_dir, config.data_dir, classes="boots"), "test", batch_size=4))


def test_a_source_folder_without_the_files_is_named_before_tfds_sees_it(tmp_path):
  config = data_config(tmp_path / "empty", tmp_path / "data")
  with pytest.raises(errors.ConfigError, match=r"empty/train-images-idx3-ubyte.gz does not exist.*apt-get install"):
    mmdata.prepare(config)


def test_missing_or_corrupt_idx_files_are_named(tmp_path):
  with pytest.raises(errors.ConfigError, match="t10k-images-idx3-ubyte.gz does not exist.*apt-get install"):
    fashion_mnist.read_split(str(tmp_path), "test")
  write_idx_files(tmp_path)
  path = tmp_path / fashion_mnist.FILES["train"][0]
  with gzip.open(path, "rb") as f:
    data = f.read()
  with gzip.open(path, "wb") as f:
    f.write(data[:-100])
  with pytest.raises(errors.InputError, match="train-images-idx3-ubyte.gz is not an idx file.*or is truncated"):
    fashion_mnist.read_split(str(tmp_path), "train")
  path.write_bytes(b"not gzip")
  with pytest.raises(errors.InputError, match="not a readable gzip file"):
    fashion_mnist.read_split(str(tmp_path), "train")


def test_a_dataset_without_a_vocabulary_needs_a_tokenizer(prepared):
  config, _ = prepared
  config = data_config(config.source_dir, config.data_dir, tokenizer={"name": "dataset"})
  with pytest.raises(errors.ConfigError, match="no vocabulary of its own; set config.data.tokenizer"):
    mmdata.get_tokenizer(config)
