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

from mmjax.data import shapes
from mmjax.data import tokenizer as tokenizer_lib

LABEL_FIELDS = ("num_objects", "shape", "colour", "size", "row", "col")


def decode_image(png: bytes) -> np.ndarray:
  """Decodes an RGB PNG to f32[H, W, 3] in [-1, 1], the range image encoders expect."""
  with Image.open(io.BytesIO(png)) as image:
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
  return pixels / 127.5 - 1.0


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
    self._tokenizer = tokenizer
    self._answer_ids = {answer: i for i, answer in enumerate(answers)}
    self._text_len = text_len
    self._question_len = question_len
    self._answer_len = answer_len
    self._keep_caption = keep_caption

  def map(self, element: dict[str, Any]) -> dict[str, Any]:
    # tfds' numpy decoding gives Text as bytes.
    caption, question, answer = (element[key].decode("utf-8") for key in ("caption", "question", "answer"))
    example = {
        "image": decode_image(element["image"]),
        "text": tokenizer_lib.tokenize_to_length(self._tokenizer, caption, self._text_len),
        "question": tokenizer_lib.tokenize_to_length(self._tokenizer, question, self._question_len,
                                                     "question_len"),
        "answer": tokenizer_lib.tokenize_to_length(self._tokenizer, answer, self._answer_len, "answer_len"),
        "answer_id": np.int32(self._answer_ids[answer]),
        "question_type": np.asarray(element["question_type"], dtype=np.int32),
        **{field: np.asarray(element[field], dtype=np.int32) for field in LABEL_FIELDS},
    }
    if self._keep_caption:
      example["caption"] = caption
      example["question_text"] = question
    return example


def scene_objects(example: dict[str, Any]) -> list[shapes.SceneObject]:
  """The scene's objects back from a preprocessed example's labels (padding dropped)."""
  return [shapes.SceneObject(*(int(example[field][i]) for field in shapes.SceneObject._fields))
          for i in range(int(example["num_objects"]))]


class AddHardNegative(grain.transforms.RandomMap):
  """Adds `negative_text`: the tokens of a hard-negative caption of the example's scene.

  Grain seeds `rng` from the sampler's seed and the record's position, so the
  negatives, like the order, are the same after a resume.
  """

  def __init__(self, tokenizer: tokenizer_lib.Tokenizer, text_len: int):
    self._tokenizer = tokenizer
    self._text_len = text_len

  def random_map(self, element: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    caption = shapes.hard_negative_caption(scene_objects(element), rng)
    return {**element, "negative_text": tokenizer_lib.tokenize_to_length(self._tokenizer, caption,
                                                                          self._text_len)}
