"""The datasets mmjax knows (`config.data.name` → tfds builder, tokenizer, preprocessing, label names), the
tokenizer a config asks for, and class subsets of a split.
"""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import grain
import ml_collections
import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from mmjax import errors
from mmjax.data import (av_digits, batch_reader, fashion_mnist, folder, moving_shapes, photos, prepared, preprocess,
                        sentiment, shapes, spoken_shapes, subword)
from mmjax.data import tokenizer as tokenizer_lib

# Per-example operations: (builder, tokenizer, data_config, train) → grain transforms applied in order.
# Eval passes (train=False) keep the reference strings and must be deterministic (they call `map`).
# How a dataset turns a photo (uint8 [H, W, 3] RGB, any size) into its models' `image` input at evaluation:
# (builder, data_config) → photo → f32 [S, S, C]. Inference on image files (mmjax.inference) goes through it.
PhotoInput = Callable[[tfds.core.DatasetBuilder, ml_collections.ConfigDict], Callable[[np.ndarray], np.ndarray]]
TrainSource = Callable[[Sequence[dict[str, Any]], tfds.core.DatasetBuilder, ml_collections.ConfigDict, str],
                      Sequence[dict[str, Any]]]
Operations = Callable[[tfds.core.DatasetBuilder, tokenizer_lib.Tokenizer, ml_collections.ConfigDict, bool],
                      list[grain.transforms.Map | grain.transforms.RandomMap]]


def _no_download_config(data_config: ml_collections.ConfigDict) -> tfds.download.DownloadConfig | None:
  del data_config
  return None


@dataclasses.dataclass(frozen=True)
class Dataset:
  """What the pipeline needs to know of a dataset: its tfds builder, the tokenizer built from the builder's
  metadata (None: the dataset has no vocabulary, so `config.data.tokenizer` must name one), the per-example
  operations, the names of its integer label fields' values ({batch field: [name of id 0, ...]}, from the
  metadata), the label field a `config.data.classes` subset filters on, whether it can take precomputed image
  features (`config.data.image_features`, mmjax.data.features), the tfds decoders to skip (fields the
  operations decode themselves, in the loader's workers), and the tfds DownloadConfig of its generation
  (a `manual_dir` for data read from local files), and how it prepares a photo file as its `image` input
  (None: its models take no photos)."""
  builder: type[tfds.core.GeneratorBasedBuilder]
  tokenizer: Callable[[Mapping[str, Any]], tokenizer_lib.Tokenizer] | None
  operations: Operations
  label_names: Callable[[Mapping[str, Any]], dict[str, list[str]]]
  class_field: str | None = None
  precomputed_images: bool = False  # Its operations pass an `image` of precomputed features through.
  decoders: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  download_config: Callable[[ml_collections.ConfigDict], tfds.download.DownloadConfig | None] = _no_download_config
  photo_input: PhotoInput | None = None
  # config.data → its builder, for datasets whose builder config comes from the data block (a folder's
  # manifest) rather than from `variant`, a name among the builder's BUILDER_CONFIGS.
  make_builder: Callable[[ml_collections.ConfigDict], tfds.core.DatasetBuilder] | None = None
  generated: bool = True  # False: prepared elsewhere, so never generated or deleted here.
  # What the train loader reads with no workers: (source, builder, data_config, split) → e.g. the split held in
  # memory (mmjax.data.batch_reader.InMemoryColumns), for small splits whose reading and decoding, not their
  # preprocessing, is what the loader spends its time on. None: `source`, read from disk.
  train_source: TrainSource | None = None


def _in_memory(source: Sequence[dict[str, Any]], builder: tfds.core.DatasetBuilder,
               data_config: ml_collections.ConfigDict, split: str) -> Sequence[dict[str, Any]]:
  del builder, data_config, split
  return batch_reader.InMemoryColumns(source)


def _decoded_in_memory(source: Sequence[dict[str, Any]], builder: tfds.core.DatasetBuilder,
                       data_config: ml_collections.ConfigDict, split: str) -> Sequence[dict[str, Any]]:
  """The train split held in memory with its PNG `image` (if the dataset skips its tfds decoding) decoded once
  into one u8[N, H, W, 3] array, when the stored split and those pixels take at most config.data.memory_cache_mb
  (absent or 0: `source`, every batch read and decoded from disk). Same batches either way.

  For the generated video and scene datasets, whose loaders spent ~2/3 of their time reading records and
  decoding 48×48 PNGs, not preprocessing them (docs/performance.md#the-input-pipeline). Shapes' 60,000 train
  scenes: 253 MB stored + 415 MB of pixels, ~13 s at loader start on this 2-core machine."""
  budget = data_config.get("memory_cache_mb", 0) * 2**20
  encoded = "image" in dataset(data_config).decoders
  pixel_bytes = len(source) * int(np.prod(builder.info.features["image"].shape)) if encoded else 0
  if not budget or builder.info.splits[split.partition("[")[0]].num_bytes + pixel_bytes > budget:
    return source
  columns = batch_reader.InMemoryColumns(source)
  if encoded:
    columns.replace_column("image", np.stack([preprocess.decode_pixels(png) for png in columns.column("image")]))
  return columns


def _shapes_operations(builder, tokenizer, data_config, train):
  operations = [preprocess.PreprocessExample(
      tokenizer, builder.info.metadata["answers"], text_len=data_config.text_len,
      question_len=data_config.question_len, answer_len=data_config.answer_len, keep_caption=not train)]
  if train and data_config.hard_negatives:
    operations.append(preprocess.AddHardNegative(tokenizer, data_config.text_len))
  if train and data_config.get("fresh_questions"):
    operations.append(preprocess.RedrawQuestion(tokenizer, builder.info.metadata["answers"],
                                                question_len=data_config.question_len,
                                                answer_len=data_config.answer_len,
                                                type_weights=data_config.get("question_type_weights", ())))
  return operations


def _moving_shapes_operations(builder, tokenizer, data_config, train):
  return [preprocess.PreprocessClip(
      tokenizer, builder.info.metadata["answers"], text_len=data_config.text_len,
      question_len=data_config.question_len, answer_len=data_config.answer_len, keep_caption=not train)]


def _av_digits_operations(builder, tokenizer, data_config, train):
  del builder
  operations = [av_digits.PreprocessAvDigits(tokenizer, text_len=data_config.text_len, keep_text=not train)]
  if train and (data_config.image_shift or data_config.audio_stretch):
    operations.append(av_digits.AugmentAvDigits(image_shift=data_config.image_shift,
                                                audio_stretch=data_config.audio_stretch))
  return operations


def _sentiment_operations(builder, tokenizer, data_config, train):
  del builder
  return [sentiment.PreprocessSentiment(tokenizer, text_len=data_config.text_len, keep_text=not train)]


def _fashion_mnist_operations(builder, tokenizer, data_config, train):
  del builder
  return [fashion_mnist.PreprocessFashionMnist(
      tokenizer, text_len=data_config.text_len, templates=data_config.templates, image_size=data_config.image_size,
      mean=data_config.image_mean, std=data_config.image_std, train=train,
      precomputed=bool(data_config.get("image_features")))]


def _shapes_photo_input(builder, data_config):
  """The photo squashed to the rendered scenes' size (they are square), in [-1, 1] like decode_image's."""
  del data_config
  size = builder.info.features["image"].shape[0]
  return lambda photo: (photos.center_crop(photo, size, crop_fraction=1.0, resample="bilinear") / 127.5
                        - 1.0).astype(np.float32)


def _fashion_mnist_photo_input(builder, data_config):
  """The photo in grey at 28×28, as Fashion-MNIST's records, then prepared as they are."""
  del builder
  def prepare(photo: np.ndarray) -> np.ndarray:
    grey = np.asarray(Image.fromarray(photos.center_crop(photo, 28, crop_fraction=1.0)).convert("L"))
    return fashion_mnist.upscale_grey(grey, data_config.image_size, data_config.image_mean, data_config.image_std)
  return prepare


def _folder_operations(builder, tokenizer, data_config, train):
  folder.check_lengths(builder.info.metadata, data_config, tokenizer)
  return [folder.PreprocessFolder(tokenizer, builder.info.metadata, data_config, train)]


def _chars_tokenizer(metadata: Mapping[str, Any]) -> tokenizer_lib.Tokenizer:
  return tokenizer_lib.CharTokenizer(metadata["chars"])


def _spoken_shapes_operations(builder, tokenizer, data_config, train):
  del train
  return [spoken_shapes.PreprocessSpokenShapes(tokenizer, builder.info.metadata, data_config)]


def _shapes_label_names(metadata: Mapping[str, Any]) -> dict[str, list[str]]:
  return {"answer_id": list(metadata["answers"]), "question_type": list(metadata["question_types"]),
          **{field: list(metadata[field + "s"]) for field in ("shape", "colour", "size")}}


def _av_digits_label_names(metadata: Mapping[str, Any]) -> dict[str, list[str]]:
  return {field: list(metadata["label_names"]) for field in ("label", "image_digit", "audio_digit", "text_digit")}


def _fashion_mnist_download_config(data_config: ml_collections.ConfigDict) -> tfds.download.DownloadConfig:
  fashion_mnist.check_source_dir(data_config.source_dir)  # tfds would raise a bare AssertionError.
  return tfds.download.DownloadConfig(manual_dir=data_config.source_dir)


DATASETS = {
    "shapes": Dataset(shapes.Shapes, lambda metadata: tokenizer_lib.WordTokenizer(metadata["vocab"]),
                      _shapes_operations, _shapes_label_names, decoders={"image": tfds.decode.SkipDecoding()},
                      photo_input=_shapes_photo_input, train_source=_decoded_in_memory),
    "moving_shapes": Dataset(moving_shapes.MovingShapes,
                             lambda metadata: tokenizer_lib.WordTokenizer(metadata["vocab"]),
                             _moving_shapes_operations, _shapes_label_names, train_source=_decoded_in_memory),
    "av_digits": Dataset(av_digits.AvDigits, lambda metadata: tokenizer_lib.CharTokenizer(metadata["chars"]),
                         _av_digits_operations, _av_digits_label_names, class_field="label",
                         train_source=_in_memory),
    "sentiment": Dataset(sentiment.Sentiment, lambda metadata: tokenizer_lib.WordTokenizer(metadata["vocab"]),
                         _sentiment_operations,
                         lambda metadata: {"label": list(metadata["label_names"]), "subset": list(metadata["subsets"])},
                         class_field="label", train_source=_in_memory),
    "fashion_mnist": Dataset(fashion_mnist.FashionMnist, None, _fashion_mnist_operations,
                             lambda metadata: {"label": list(metadata["label_names"])}, class_field="label",
                             precomputed_images=True, download_config=_fashion_mnist_download_config,
                             photo_input=_fashion_mnist_photo_input),
    "folder": Dataset(folder.FolderDataset, lambda metadata: tokenizer_lib.WordTokenizer(metadata["vocab"]),
                      _folder_operations, folder.folder_label_names, class_field="label", precomputed_images=True,
                      photo_input=lambda builder, data_config: folder.photo_transform(data_config),
                      make_builder=folder.make_builder, train_source=folder.train_source),
    "spoken_shapes": Dataset(spoken_shapes.SpokenShapes, _chars_tokenizer, _spoken_shapes_operations,
                             spoken_shapes.label_names, class_field="source"),
    # The same records, the transcripts as words (mmjax.data.spoken_shapes.WORDS) rather than characters.
    "spoken_shapes_words": Dataset(spoken_shapes.SpokenShapes, lambda metadata: tokenizer_lib.WordTokenizer(
        spoken_shapes.WORDS), _spoken_shapes_operations, spoken_shapes.label_names, class_field="source"),
    "spoken_vqa": Dataset(spoken_shapes.SpokenVqa, _chars_tokenizer, _spoken_shapes_operations,
                          spoken_shapes.label_names, decoders={"image": tfds.decode.SkipDecoding()},
                          photo_input=_shapes_photo_input),
    # A dataset prepared elsewhere, by name, read as a folder dataset through config.data.fields.
    "tfds": Dataset(tfds.core.DatasetBuilder, lambda metadata: tokenizer_lib.WordTokenizer(metadata["vocab"]),
                    _folder_operations, folder.folder_label_names, class_field="label", precomputed_images=True,
                    photo_input=lambda builder, data_config: folder.photo_transform(data_config),
                    make_builder=prepared.make_builder, generated=False, train_source=folder.train_source),
}


def dataset(data_config: ml_collections.ConfigDict) -> Dataset:
  return errors.lookup(DATASETS, data_config.name, "dataset", "config.data.name")


def dataset_builder(data_config: ml_collections.ConfigDict) -> tfds.core.DatasetBuilder:
  """The tfds builder of `config.data` (nothing is generated or read yet)."""
  entry = dataset(data_config)
  if entry.make_builder is not None:
    return entry.make_builder(data_config)
  builder_cls = entry.builder
  # tfds' own message for an unknown config lists no names.
  if data_config.variant not in builder_cls.builder_configs:
    raise errors.ConfigError(f"Unknown variant {data_config.variant!r} of dataset {data_config.name!r}; "
                             f"known variants: {sorted(builder_cls.builder_configs)}.")
  return builder_cls(config=data_config.variant, data_dir=data_config.data_dir)


@functools.cache
def _subword_tokenizer(name: str, path: str) -> tokenizer_lib.Tokenizer:
  return subword.build_subword_tokenizer(name, path)


def tokenizer(builder: tfds.core.DatasetBuilder, data_config: ml_collections.ConfigDict) -> tokenizer_lib.Tokenizer:
  """`config.data.tokenizer` ({name: wordpiece | clip_bpe, path}; built once per process), or the dataset's own
  (name "dataset", or no such block)."""
  block = data_config.get("tokenizer") or {}
  name = block.get("name", "dataset")
  if name != "dataset":
    return _subword_tokenizer(name, block.get("path", ""))
  make = dataset(data_config).tokenizer
  if make is None:
    raise errors.ConfigError(f"Dataset {data_config.name!r} has no vocabulary of its own; set config.data.tokenizer "
                             f"to one of {sorted(subword.TOKENIZERS)}, e.g. {{'name': 'wordpiece'}}.")
  return make(builder.info.metadata)


class ClassSubset(Sequence[dict[str, Any]]):
  """The records of a data source whose label is one of a set of classes, in their original order. Its `repr`
  names the source and the classes: the train loader's saved state holds it, and a restored loader checks it
  (object's default repr, an address, made every resume of a class subset fail)."""

  def __init__(self, source: Sequence[dict[str, Any]], indices: np.ndarray, classes: str = ""):
    self._source, self._indices, self._classes = source, indices, classes

  def __repr__(self) -> str:
    return f"ClassSubset({self._source!r}, {self._classes}, {len(self._indices)} records)"

  def __len__(self) -> int:
    return len(self._indices)

  def __getitem__(self, index: int) -> dict[str, Any]:
    return self._source[int(self._indices[index])]

  def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
    return self._source.__getitems__([int(self._indices[i]) for i in indices])


_class_indices: dict[tuple[str, str, str, tuple[int, ...]], np.ndarray] = {}


def _indices_of_classes(source: Sequence[dict[str, Any]], field: str, class_ids: tuple[int, ...],
                        key: tuple[str, str]) -> np.ndarray:
  """Positions of the records of `source` whose `field` is in `class_ids`; read once per process and
  (dataset folder, split) `key`."""
  cache_key = (*key, field, class_ids)
  if cache_key not in _class_indices:
    labels = [int(record[field]) for start in range(0, len(source), 4096)
              for record in source.__getitems__(range(start, min(start + 4096, len(source))))]
    _class_indices[cache_key] = np.flatnonzero(np.isin(np.asarray(labels), class_ids))
  return _class_indices[cache_key]


def class_subset(source: Sequence[dict[str, Any]], builder: tfds.core.DatasetBuilder,
                 data_config: ml_collections.ConfigDict, split: str) -> Sequence[dict[str, Any]]:
  """`source`, restricted to the records whose class field is one of `config.data.classes` (a comma-separated
  list of class names; "" keeps every record). E.g. training on 7 classes and evaluating zero-shot on the 3
  others, whose records a zero-shot evaluator selects with its own `classes`."""
  names = [name.strip() for name in (data_config.get("classes") or "").split(",") if name.strip()]
  if not names:
    return source
  field = dataset(data_config).class_field
  if field is None:
    raise errors.ConfigError(f"config.data.classes: dataset {data_config.name!r} has no class field to filter on; "
                             "leave config.data.classes empty.")
  known = dataset(data_config).label_names(builder.info.metadata)[field]
  unknown = [name for name in names if name not in known]
  if unknown:
    raise errors.ConfigError(f"config.data.classes names {unknown}, which are not classes of {data_config.name!r}; "
                             f"its classes: {known}.")
  class_ids = tuple(sorted(known.index(name) for name in names))
  indices = _indices_of_classes(source, field, class_ids, (str(builder.data_dir), split))
  if not len(indices):
    raise errors.InputError(f"Split {split!r} of {data_config.name!r} has no records of classes {names}.")
  return ClassSubset(source, indices, f"{field} in {names}")
