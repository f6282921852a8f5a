"""Fashion-MNIST from local idx files (Debian's dataset-fashion-mnist package), as a tfds dataset.

Nothing is downloaded: the builder reads the four idx.gz files of a folder, tfds' `manual_dir`
(`config.data.source_dir`, by default where `apt-get install dataset-fashion-mnist` puts them), checks
their headers and record counts, and writes array_record splits `train` (60,000) and `test` (10,000).
Class names are plain English ("t-shirt", "ankle boot") so a pretrained text tower can read them.

`PreprocessFashionMnist` turns a record into what an image–text model takes: the 28×28 grey image
upscaled to the image tower's resolution and normalised by its checkpoint's mean and std, and for
training a caption made from the class name with one of a few templates.
"""
from __future__ import annotations

import gzip
import os
from collections.abc import Iterator, Sequence
from typing import Any

import grain
import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from mmjax import errors
from mmjax.data import tokenizer as tokenizer_lib

DEFAULT_SOURCE_DIR = "/usr/share/datasets/fashion-mnist"
CLASS_NAMES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
               "ankle boot")
FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 60_000),
         "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 10_000)}
_IMAGE_MAGIC, _LABEL_MAGIC = 2051, 2049
_INSTALL = "install them with `apt-get install dataset-fashion-mnist`, or set config.data.source_dir to their folder"


def _read_idx(path: str, magic: int, dims: int) -> np.ndarray:
  """The uint8 array of an idx.gz file, after checking its magic number and that its size fits its header."""
  if not os.path.isfile(path):
    raise errors.ConfigError(f"Fashion-MNIST file {path} does not exist; {_INSTALL}.")
  try:
    with gzip.open(path, "rb") as f:
      data = f.read()
  except (OSError, EOFError) as e:
    raise errors.InputError(f"Fashion-MNIST file {path} is not a readable gzip file ({e}); {_INSTALL}.") from None
  header = np.frombuffer(data[:4 * (1 + dims)], ">u4")
  shape = tuple(int(n) for n in header[1:])
  if len(header) != 1 + dims or header[0] != magic or len(data) != 4 * (1 + dims) + int(np.prod(shape)):
    raise errors.InputError(f"Fashion-MNIST file {path} is not an idx file of {dims} dimension(s) with magic "
                            f"{magic}, or is truncated; {_INSTALL}.")
  return np.frombuffer(data, np.uint8, offset=4 * (1 + dims)).reshape(shape)


def check_source_dir(source_dir: str) -> None:
  """A ConfigError naming the first of the four idx.gz files missing from `source_dir` (config.data.source_dir)."""
  for images_file, labels_file, _ in FILES.values():
    for name in (images_file, labels_file):
      if not os.path.isfile(os.path.join(source_dir, name)):
        raise errors.ConfigError(f"Fashion-MNIST file {os.path.join(source_dir, name)} does not exist "
                                 f"(config.data.source_dir={source_dir!r}); {_INSTALL}.")


def read_split(source_dir: str, split: str, expected: int | None = None) -> tuple[np.ndarray, np.ndarray]:
  """(images u8[N, 28, 28], labels u8[N]) of `split` from the idx files in `source_dir`; `expected` checks N."""
  images_file, labels_file, _ = FILES[split]
  images = _read_idx(os.path.join(source_dir, images_file), _IMAGE_MAGIC, 3)
  labels = _read_idx(os.path.join(source_dir, labels_file), _LABEL_MAGIC, 1)
  if len(images) != len(labels) or (expected is not None and len(images) != expected):
    raise errors.InputError(f"Fashion-MNIST {split} in {source_dir} has {len(images)} images and {len(labels)} "
                            f"labels; expected {expected or len(labels)} of each. {_INSTALL}.")
  if labels.max(initial=0) >= len(CLASS_NAMES):
    raise errors.InputError(f"Fashion-MNIST labels in {os.path.join(source_dir, labels_file)} go up to "
                            f"{labels.max()}; there are {len(CLASS_NAMES)} classes.")
  return images, labels


class FashionMnist(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """tfds builder reading Fashion-MNIST's idx files from `manual_dir` (see the module docstring)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release: the idx files of Debian's dataset-fashion-mnist."}
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(name="default", description="Every image of the idx files.")]
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"The four idx.gz files of Fashion-MNIST: {_INSTALL}."
  url_infos = None  # Nothing to download (see mmjax.data.generated.GeneratedBuilder).

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description="Fashion-MNIST: 28x28 grey images of 10 kinds of clothing (Xiao et al., 2017; MIT).",
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=(28, 28), dtype=np.uint8),
            "label": tfds.features.ClassLabel(names=CLASS_NAMES),
        }),
        disable_shuffling=True,  # Record i of a split is image i of its idx file.
        metadata=tfds.core.MetadataDict(label_names=list(CLASS_NAMES)),
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Iterator]:
    source_dir = os.fspath(dl_manager.manual_dir)
    # Read (and checked) before anything is written, so a bad file fails at once.
    splits = {split: read_split(source_dir, split) for split in FILES}
    return {split: self._generate_examples(*arrays) for split, arrays in splits.items()}

  def _generate_examples(self, images: np.ndarray, labels: np.ndarray) -> Iterator[tuple[int, dict[str, Any]]]:
    for index, (image, label) in enumerate(zip(images, labels)):
      yield index, {"image": image, "label": int(label)}

  def _log_download_bytes(self) -> None:
    pass

  def _log_download_done(self) -> None:
    pass


def upscale_grey(image: np.ndarray, size: int, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
  """u8[h, w] → f32[size, size, 3]: bilinear upscaling (PIL), the grey channel repeated as RGB, then
  (x / 255 − mean) / std per channel, the normalisation of the image tower's checkpoint."""
  resized = np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR), np.float32) / 255.0
  rgb = np.repeat(resized[..., None], 3, axis=-1)
  return ((rgb - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)).astype(np.float32)


class PreprocessFashionMnist(grain.transforms.RandomMap):
  """A record → {image f32[S, S, 3], label i32, text i32[text_len][, caption str]}.

  With `precomputed`, `image` already holds a frozen tower's features (mmjax.data.features) and passes through.

  Training examples (`train=True`) get `text`: one of `templates` (picked at random) filled with the class
  name, tokenized. Evaluation examples are deterministic (the rng is not used) and keep `caption` (the first
  template's), for retrieval-style evaluators.
  """

  def __init__(self, tokenizer: tokenizer_lib.Tokenizer, *, text_len: int, templates: Sequence[str],
               image_size: int, mean: Sequence[float], std: Sequence[float], train: bool, precomputed: bool = False):
    if not templates or any("{}" not in template for template in templates):
      raise errors.ConfigError(f"config.data.templates={list(templates)!r} must be a non-empty list of strings "
                               "with a {} for the class name, e.g. 'a photo of a {}.'.")
    self._tokenizer, self._text_len, self._templates = tokenizer, text_len, tuple(templates)
    self._image_size, self._mean, self._std, self._train = image_size, tuple(mean), tuple(std), train
    self._precomputed = precomputed

  def random_map(self, element: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    label = int(element["label"])
    image = element["image"] if self._precomputed else upscale_grey(element["image"], self._image_size, self._mean,
                                                                     self._std)
    example = {"image": image, "label": np.int32(label)}
    template = self._templates[rng.integers(len(self._templates))] if self._train else self._templates[0]
    caption = template.format(CLASS_NAMES[label])
    example["text"] = tokenizer_lib.tokenize_to_length(self._tokenizer, caption, self._text_len)
    if not self._train:
      example["caption"] = caption
    return example

  def map(self, element: dict[str, Any]) -> dict[str, Any]:
    """The deterministic evaluation form (the pipeline's eval passes call `map`)."""
    return self.random_map(element, np.random.default_rng(0))
