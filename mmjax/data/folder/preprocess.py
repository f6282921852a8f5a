"""A folder dataset's record → model inputs, as big_vision and open_clip prepare photos and text.

Training: an Inception-style random-resized crop (`config.data.train_crop_scale`, the smallest fraction of the
area kept; 0: no crop, the eval transform instead) and a random horizontal flip (`train_flip`), one caption of
the example's captions at random. Evaluation: the shorter side resized to image_size / crop_fraction and the
centre crop, the first caption, plus every caption as `caption_refs` (the references of caption metrics).
Pixels are normalised per channel as (x / 255 − image_mean) / image_std, the image tower's checkpoint's values.

The train loader's batch form (`random_map_batch`) crops each image, then normalises the batch's pixels at once; a
small train split is held in memory with its images decoded (`train_source`, config.data.memory_cache_mb).
"""
from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import grain
import ml_collections
import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from mmjax import errors
from mmjax.data import batch_reader, photos
from mmjax.data import tokenizer as tokenizer_lib
from mmjax.data.folder.text_stats import normalize_answer

# The token-length key of each text field, and the record field it is read from.
TEXT_LENGTHS = {"captions": "text_len", "question": "question_len", "answer": "answer_len"}


def photo_transform(data_config: ml_collections.ConfigDict) -> Any:
  """photo uint8 [H, W, 3] → f32 [S, S, 3]: the evaluation transform (resize, centre crop, normalise)."""
  normalize = pixel_normalizer(data_config)

  def transform(photo: np.ndarray) -> np.ndarray:
    return normalize(photos.center_crop(photo, data_config.image_size, data_config.crop_fraction))
  return transform


def pixel_normalizer(data_config: ml_collections.ConfigDict) -> photos.PixelNormalizer:
  """uint8 [..., 3] → f32: (x − 255·image_mean) / (255·image_std) per channel."""
  return photos.PixelNormalizer(255.0 * np.asarray(data_config.image_mean), 255.0 * np.asarray(data_config.image_std))


def train_source(source: Sequence[dict[str, Any]], builder: tfds.core.DatasetBuilder,
                 data_config: ml_collections.ConfigDict, split: str) -> Sequence[dict[str, Any]]:
  """What the train loader reads (with no workers): the split read once and held in memory
  (batch_reader.InMemoryColumns) when its stored records take at most config.data.memory_cache_mb, with its images
  decoded when their pixels fit too; else `source`, each batch read and decoded from disk.

  For the small folders where reading and decoding cost more than the crop (the example folder's 64-pixel images:
  0.06 ms to read and parse a record, 0.07 ms to decode it, docs/performance.md#the-input-pipeline); the loader's
  batches and state are the same either way. Eval passes read from disk."""
  budget = data_config.memory_cache_mb * 2**20
  stored = builder.info.splits[split.partition("[")[0]].num_bytes  # The whole split's, if `split` is a slice.
  if data_config.get("image_features") or not budget or stored > budget:
    return source
  columns = batch_reader.InMemoryColumns(source)
  if "image" in columns.fields:
    encoded = columns.column("image")
    # PIL holds an RGB pixel in 4 bytes; the headers give the sizes without decoding.
    pixel_bytes = sum(4 * width * height for width, height in (Image.open(io.BytesIO(image)).size for image in encoded))
    if stored + pixel_bytes <= budget:
      decoded = np.empty(len(encoded), dtype=object)
      decoded[:] = [photos.decode_image(image) for image in encoded]
      columns.replace_column("image", decoded)
  return columns


def check_lengths(metadata: Mapping[str, Any], data_config: ml_collections.ConfigDict,
                  tokenizer: tokenizer_lib.Tokenizer) -> None:
  """Before anything compiles: every text fits its token length (with the dataset's word tokenizer, whose
  lengths are known from the build; subword tokenizers truncate, as their references do)."""
  if getattr(tokenizer, "truncates", False):
    return
  for field, (words, source) in metadata["longest"].items():
    key = TEXT_LENGTHS[field]
    if words + 1 > data_config[key]:
      raise errors.ConfigError(f"The longest {field.rstrip('s')} of the folder dataset ({source}) has {words} words; "
                               f"with eos it needs config.data.{key}={words + 1} (now {data_config[key]}).")


def _text(value: Any) -> str:
  """tfds' numpy decoding gives Text as bytes; a prepared dataset's mapped records may hold str."""
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


class PreprocessFolder(grain.transforms.RandomMap):
  """A record → {image f32[S, S, 3], text i32[text_len], question, answer i32[..], answer_id, question_type,
  label i32, audio f32[audio_samples]} (the fields its manifest has), and for evaluation also `id`, `caption`,
  `question_text` (str) and `caption_refs` i32[max_captions, text_len] (zero rows past its captions).

  `answer_id` indexes the train split's answers (−1: an answer never seen in training, which a classifier
  cannot give; a decoder still can)."""

  def __init__(self, tokenizer: tokenizer_lib.Tokenizer, metadata: Mapping[str, Any],
               data_config: ml_collections.ConfigDict, train: bool):
    self._train = train
    # Read once: a ConfigDict lookup cost ~1 µs, several per record.
    self._lengths = {key: data_config[key] for key in TEXT_LENGTHS.values()}
    self._image_size, self._crop_fraction = data_config.image_size, data_config.crop_fraction
    self._crop_scale, self._flip = data_config.train_crop_scale, data_config.train_flip
    self._token_rows = tokenizer_lib.TokenRows(tokenizer)  # Captions, questions and answers repeat.
    self._answer_ids = {answer: i for i, answer in enumerate(metadata["answers"])}
    self._max_captions = metadata["max_captions"]
    self._audio_samples = round(data_config.audio_seconds * data_config.sample_rate)
    self._normalize = pixel_normalizer(data_config)
    self._precomputed = bool(data_config.get("image_features"))

  def _tokens(self, text: str, key: str) -> np.ndarray:
    return self._token_rows.row(text, self._lengths[key], key)

  def _pixels(self, image: bytes | Image.Image, rng: np.random.Generator) -> np.ndarray:
    """uint8 [S, S, 3]: the crop of an image file's bytes, or of the decoded image (a split held in memory)."""
    photo = image if isinstance(image, Image.Image) else photos.decode_image(image)
    if not self._train or not self._crop_scale:
      return photos.center_crop(photo, self._image_size, self._crop_fraction)
    return photos.random_resized_crop(photo, self._image_size, rng, scale=(self._crop_scale, 1.0), flip=self._flip)

  def _audio(self, audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A window of audio_seconds: a random one for training, the first for evaluation; zero-padded."""
    spare = len(audio) - self._audio_samples
    start = int(rng.integers(0, spare + 1)) if self._train and spare > 0 else 0
    window = np.zeros(self._audio_samples, np.float32)
    clip = np.asarray(audio[start:start + self._audio_samples], np.float32)
    window[:len(clip)] = clip
    return window

  def _example(self, element: Mapping[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """The example of a record, its image the uint8 crop (not yet normalised)."""
    example: dict[str, Any] = {}
    if "image" in element:
      # With config.data.image_features, `image` already holds a frozen tower's features (mmjax.data.features).
      example["image"] = element["image"] if self._precomputed else self._pixels(element["image"], rng)
    if "captions" in element:
      captions = [_text(c) for c in element["captions"]]
      caption = captions[int(rng.integers(len(captions)))] if self._train else captions[0]
      example["text"] = self._tokens(caption, "text_len")
      if not self._train:
        example["caption"] = caption
        refs = np.zeros((self._max_captions, self._lengths["text_len"]), np.int32)
        for i, reference in enumerate(captions[:self._max_captions]):
          refs[i] = self._tokens(reference, "text_len")
        example["caption_refs"] = refs
    if "question" in element:
      question, answer = (_text(element[k]) for k in ("question", "answer"))
      example.update(question=self._tokens(question, "question_len"), answer=self._tokens(answer, "answer_len"),
                     answer_id=np.int32(self._answer_ids.get(normalize_answer(answer), -1)),
                     question_type=np.int32(element["question_type"]))
      if not self._train:
        example["question_text"] = question
    if "label" in element:
      example["label"] = np.int32(element["label"])
    if "audio" in element:
      example["audio"] = self._audio(element["audio"], rng)
    if not self._train:
      example["id"] = _text(element["id"])
    return example

  def random_map(self, element: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    example = self._example(element, rng)
    if "image" in example and not self._precomputed:
      example["image"] = self._normalize(example["image"])
    return example

  def random_map_batch(self, batch: Mapping[str, np.ndarray],
                       rngs: Sequence[np.random.Generator]) -> dict[str, np.ndarray]:
    """`random_map` of each row (rngs[i] for row i), stacked: the crops normalised together."""
    examples = [self._example({key: column[row] for key, column in batch.items()}, rng)
                for row, rng in enumerate(rngs)]
    stacked = batch_reader.collate(examples)
    if "image" in stacked and not self._precomputed:
      stacked["image"] = self._normalize(stacked["image"])
    return stacked

  def map(self, element: dict[str, Any]) -> dict[str, Any]:
    """The deterministic evaluation form (the pipeline's eval passes call `map`)."""
    return self.random_map(element, np.random.default_rng(0))


def folder_label_names(metadata: Mapping[str, Any]) -> dict[str, list[str]]:
  return {"label": list(metadata["label_names"]), "answer_id": list(metadata["answers"]),
          "question_type": list(metadata["question_types"])}

