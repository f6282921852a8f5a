"""Spoken Shapes records → model inputs, in the input pipeline's workers."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grain
import ml_collections
import numpy as np

from mmjax.data import batch_reader
from mmjax.data import tokenizer as tokenizer_lib
from mmjax.data.preprocess import decode_pixels, to_unit_range


def pad_audio(clips: list[np.ndarray], max_samples: int) -> np.ndarray:
  """Stored i16 clips of any length ≤ max_samples → f32[len(clips), max_samples] in [-1, 1], zero-padded at the
  end: every batch has the model's one input window."""
  audio = np.zeros((len(clips), max_samples), np.float32)
  for row, clip in enumerate(clips):
    audio[row, :len(clip)] = clip
  audio /= 32768.0
  return audio


class PreprocessSpokenShapes(grain.transforms.Map):
  """A record of either Spoken Shapes dataset → model inputs.

  Both: `audio` f32[max_samples] (the metadata's window, zero-padded). Speech to text: `text` i32[text_len], the
  transcript's character ids with eos and padding, and `source` (0 caption, 1 digits). Spoken VQA: `image`
  f32[48, 48, 3] in [-1, 1], the written `question` i32[question_len] (a text-question baseline reads it),
  `answer` i32[answer_len], `answer_id` (an index of the metadata's answers) and `question_type`.
  """

  def __init__(self, tokenizer: tokenizer_lib.Tokenizer, metadata: Mapping[str, Any],
               data_config: ml_collections.ConfigDict):
    self._tokens = tokenizer_lib.TokenRows(tokenizer)
    self._max_samples = int(metadata["max_samples"])
    self._vqa = metadata["task"] == "vqa"
    self._answer_ids = {answer: i for i, answer in enumerate(metadata["answers"])}
    self._config = data_config

  def map(self, element: dict[str, Any]) -> dict[str, Any]:
    return {key: value[0] for key, value in self.map_batch(batch_reader.collate([element])).items()}

  def map_batch(self, batch: dict[str, Any]) -> dict[str, np.ndarray]:
    """`map` of every row of a batch of records (mmjax.data.batch_reader.collate), the training loader's form."""
    example = {"audio": pad_audio(list(batch["audio"]), self._max_samples)}
    if not self._vqa:
      example["text"] = self._tokens(_strings(batch["text"]), self._config.text_len)
      example["source"] = np.asarray(batch["source"], dtype=np.int32)
      return example
    answers = _strings(batch["answer"])
    example.update(
        image=to_unit_range(np.stack([decode_pixels(png) for png in batch["image"]])),
        question=self._tokens(_strings(batch["question"]), self._config.question_len, "question_len"),
        answer=self._tokens(answers, self._config.answer_len, "answer_len"),
        answer_id=np.array([self._answer_ids[answer] for answer in answers], dtype=np.int32),
        question_type=np.asarray(batch["question_type"], dtype=np.int32))
    return example


def _strings(values: Any) -> list[str]:
  """tfds' numpy decoding gives Text as bytes."""
  return [value.decode("utf-8") if isinstance(value, bytes) else value for value in values]
