"""Sentiment records → model inputs, in the input pipeline's workers."""
from __future__ import annotations

from typing import Any

import grain
import numpy as np

from mmjax.data import batch_reader
from mmjax.data import tokenizer as tokenizer_lib


class PreprocessSentiment(grain.transforms.Map):
  """A record → {image, audio, text, label, score, subset[, text_string]}.

  `image` f32[32, 32, 1] and `audio` f32[CLIP_SAMPLES] are scaled to [-1, 1] (the stored audio peaks well inside
  it); `text` is i32[text_len] of word ids, eos and padding; `label` and `subset` are int32, `score` float32.
  `keep_text` adds the sentence as `text_string`, for evaluation only: strings cannot become jax.Arrays.
  """

  def __init__(self, tokenizer: tokenizer_lib.Tokenizer, *, text_len: int, keep_text: bool = False):
    self._tokens = tokenizer_lib.TokenRows(tokenizer)
    self._text_len = text_len
    self._keep_text = keep_text

  def map(self, element: dict[str, Any]) -> dict[str, Any]:
    return {key: value[0] for key, value in self.map_batch(batch_reader.collate([element])).items()}

  def map_batch(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`map` of every row of a batch of records, the scaling done once over the batch."""
    texts = [text.decode("utf-8") if isinstance(text, bytes) else text for text in batch["text"]]
    example = {
        "image": np.asarray(batch["image"], dtype=np.float32) / 127.5 - 1.0,
        "audio": np.asarray(batch["audio"], dtype=np.float32) / 32768.0,
        "text": self._tokens(texts, self._text_len),
        "label": np.asarray(batch["label"], dtype=np.int32),
        "subset": np.asarray(batch["subset"], dtype=np.int32),
        "score": np.asarray(batch["score"], dtype=np.float32),
    }
    if self._keep_text:
      example["text_string"] = np.array(texts, dtype=object)
    return example
