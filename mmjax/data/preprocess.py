"""Per-example preprocessing: a stored Shapes record → numpy arrays a model can take.

Images stay PNG bytes in the data source (tfds decoding is skipped) and are
decoded here, in the loader's worker processes when it has some.
"""
from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import grain
import numpy as np
from PIL import Image

from mmjax import errors
from mmjax.data import batch_reader, moving_shapes, photos, shapes
from mmjax.data import tokenizer as tokenizer_lib

LABEL_FIELDS = ("num_objects", "shape", "colour", "size", "row", "col")


def decode_pixels(png: bytes) -> np.ndarray:
  """Decodes a PNG to its RGB pixels, u8[H, W, 3]."""
  with Image.open(io.BytesIO(png)) as image:
    return photos.rgb_pixels(image)


def to_unit_range(pixels: np.ndarray) -> np.ndarray:
  """u8 pixels (any shape) → f32 in [-1, 1], the range image encoders expect: x / 127.5 − 1 in float32, in place
  (a batch's array is megabytes; fresh ones for each step cost more than the arithmetic)."""
  scaled = pixels.astype(np.float32)
  scaled /= 127.5
  scaled -= 1.0
  return scaled


def decode_image(png: bytes) -> np.ndarray:
  """Decodes an RGB PNG to f32[H, W, 3] in [-1, 1]."""
  return to_unit_range(decode_pixels(png))


class PreprocessExample(grain.transforms.Map):
  """A record → {image, text, question, answer, answer_id, question_type, labels[, caption, question_text]}.

  `text`, `question` and `answer` are token ids of lengths `text_len`,
  `question_len` and `answer_len`; `answer_id` indexes `answers` (the dataset's
  answer list, so VQA can also be trained as classification). `keep_caption` is
  off for training batches: string arrays cannot become jax.Arrays, and
  evaluators that need the reference text ask for it.
  """

  def __init__(self, tokenizer: tokenizer_lib.Tokenizer, answers: Sequence[str], *, text_len: int,
               question_len: int, answer_len: int, keep_caption: bool = False):
    self._answer_ids = {answer: i for i, answer in enumerate(answers)}
    self._text_len = text_len
    self._question_len = question_len
    self._answer_len = answer_len
    self._keep_caption = keep_caption
    self._tokens = tokenizer_lib.TokenRows(tokenizer)  # Questions and answers repeat; so do many captions.

  def map(self, element: dict[str, Any]) -> dict[str, Any]:
    return {key: value[0] for key, value in self.map_batch(batch_reader.collate([element])).items()}

  def map_batch(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`map` of every row of a batch of records (one array per field, mmjax.data.batch_reader.collate): the
    training loader's form, which `map` is the one-row case of. The PNGs are decoded one by one, the pixels
    scaled once over the batch."""
    # tfds' numpy decoding gives Text as bytes.
    captions, questions, answers = ([value.decode("utf-8") for value in batch[key]]
                                    for key in ("caption", "question", "answer"))
    example = {
        **self.pixels(batch),
        "text": self._tokens(captions, self._text_len, "text_len"),
        "question": self._tokens(questions, self._question_len, "question_len"),
        "answer": self._tokens(answers, self._answer_len, "answer_len"),
        "answer_id": np.array([self._answer_ids[answer] for answer in answers], dtype=np.int32),
        "question_type": np.asarray(batch["question_type"], dtype=np.int32),
        **{field: np.asarray(batch[field], dtype=np.int32) for field in LABEL_FIELDS},
    }
    if self._keep_caption:
      example["caption"] = np.array(captions, dtype=object)
      example["question_text"] = np.array(questions, dtype=object)
    return example

  def pixels(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The batch's pixel fields: Shapes' `image`, f32[B, H, W, 3] in [-1, 1] decoded from its PNGs (or taken as
    they are when a train split held in memory decoded them already: u8[B, H, W, 3])."""
    images = batch["image"]
    pixels = images if images.dtype == np.uint8 else np.stack([decode_pixels(png) for png in images])
    return {"image": to_unit_range(pixels)}


class PreprocessClip(PreprocessExample):
  """A Moving Shapes record (mmjax.data.moving_shapes) → PreprocessExample's fields, with `video`
  f32[T, H, W, 3] in [-1, 1] and its middle frame as `image` f32[H, W, 3] (moving_shapes.MIDDLE_FRAME, what
  the single-frame baseline reads) in place of Shapes' image."""

  def pixels(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    video = to_unit_range(np.asarray(batch["video"]))
    return {"video": video, "image": np.ascontiguousarray(video[:, moving_shapes.MIDDLE_FRAME])}


def scene_objects(example: dict[str, Any]) -> list[shapes.SceneObject]:
  """The scene's objects back from a preprocessed example's labels (padding dropped)."""
  return [shapes.SceneObject(*(int(example[field][i]) for field in shapes.SceneObject._fields))
          for i in range(int(example["num_objects"]))]


def batch_scenes(batch: dict[str, np.ndarray]) -> list[list[shapes.SceneObject]]:
  """`scene_objects` of every row of a batch."""
  fields = ("num_objects", *shapes.SceneObject._fields)
  return [scene_objects({field: batch[field][row] for field in fields}) for row in range(len(batch["num_objects"]))]


class AddHardNegative(grain.transforms.RandomMap):
  """Adds `negative_text`: the tokens of a hard-negative caption of the example's scene.

  Grain seeds `rng` from the sampler's seed and the record's position, so the
  negatives, like the order, are the same after a resume.
  """

  def __init__(self, tokenizer: tokenizer_lib.Tokenizer, text_len: int):
    self._tokens = tokenizer_lib.TokenRows(tokenizer)
    self._text_len = text_len

  def random_map(self, element: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    caption = shapes.hard_negative_caption(scene_objects(element), rng)
    return {**element, "negative_text": self._tokens([caption], self._text_len)[0]}

  def random_map_batch(self, batch: dict[str, np.ndarray], rngs: list[np.random.Generator]) -> dict[str, np.ndarray]:
    """`random_map` of every row of a batch (row i drawing from rngs[i]), without taking the batch apart."""
    captions = [shapes.hard_negative_caption(scene, rng) for scene, rng in zip(batch_scenes(batch), rngs)]
    return {**batch, "negative_text": self._tokens(captions, self._text_len)}


class RedrawQuestion(grain.transforms.RandomMap):
  """Replaces a training example's stored question with a new one about the same scene, drawn from its labels
  by `shapes.vqa_question` (the builder's own question sampler) with the record's generator: another question
  each epoch, as VQA datasets give several questions per image, where the stored split has one per scene.

  Grain seeds `rng` from the sampler's seed and the record's position, so the questions, like the order, are
  the same after a resume. Train splits only: "no" answers to existence questions name a seen pair.
  `type_weights` as in `shapes.vqa_question` (empty: the builder's uniform mix). A weight for the training-only
  "where" questions makes answers of two words ("top left") outside the answer set, so the batch then has no
  `answer_id`: a classifier head cannot train on them, and says so before compiling (its field is missing).
  """

  def __init__(self, tokenizer: tokenizer_lib.Tokenizer, answers: Sequence[str], *, question_len: int,
               answer_len: int, type_weights: Sequence[float] = ()):
    types = shapes.TRAINING_QUESTION_TYPES
    type_weights = tuple(float(weight) for weight in type_weights)
    if type_weights and (len(type_weights) not in (len(shapes.QUESTION_TYPES), len(types))
                         or min(type_weights) < 0 or not sum(type_weights)):
      raise errors.ConfigError(
          f"config.data.question_type_weights={type_weights} needs one weight ≥ 0 per question type {types} "
          f"(the last, 'where', optional), not all zero; or () for the stored mix.")
    asks_where = len(type_weights) == len(types) and type_weights[-1] > 0
    self._answer_ids = None if asks_where else {answer: i for i, answer in enumerate(answers)}
    self._type_weights = type_weights
    self._question_len, self._answer_len = question_len, answer_len
    self._tokens = tokenizer_lib.TokenRows(tokenizer)

  def random_map(self, element: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    batch = self.random_map_batch(batch_reader.collate([element]), [rng])
    return {key: value[0] for key, value in batch.items()}

  def random_map_batch(self, batch: dict[str, np.ndarray], rngs: list[np.random.Generator]) -> dict[str, np.ndarray]:
    """`random_map` of every row of a batch (row i drawing from rngs[i])."""
    drawn = [shapes.vqa_question(scene, rng, shapes.pair_pool(heldout=False), self._type_weights)
             for scene, rng in zip(batch_scenes(batch), rngs)]
    questions, answers, types = zip(*drawn)
    redrawn = {"question": self._tokens(list(questions), self._question_len, "question_len"),
               "answer": self._tokens(list(answers), self._answer_len, "answer_len"),
               "question_type": np.array(types, dtype=np.int32)}
    if self._answer_ids is None:
      return {**{key: value for key, value in batch.items() if key != "answer_id"}, **redrawn}
    return {**batch, **redrawn, "answer_id": np.array([self._answer_ids[answer] for answer in answers], np.int32)}
