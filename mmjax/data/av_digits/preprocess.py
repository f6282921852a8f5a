"""AV-Digits records → model inputs, in the input pipeline's workers."""
from __future__ import annotations

from typing import Any

import grain
import numpy as np

from mmjax.data import tokenizer as tokenizer_lib


class PreprocessAvDigits(grain.transforms.Map):
  """A record → {image, audio, text, label, image_digit, audio_digit, text_digit, *_heavy[, text_string]}.

  `image` f32[28, 28, 1] and `audio` f32[CLIP_SAMPLES] are scaled to [-1, 1]; `text` is i32[text_len]
  of character ids, eos and padding; the digits and heavy flags are int32 scalars (the flags let an
  evaluator split accuracy by which modalities were corrupted). `keep_text` adds the string as
  `text_string`, for evaluation only: strings cannot become jax.Arrays.
  """

  def __init__(self, tokenizer: tokenizer_lib.Tokenizer, *, text_len: int, keep_text: bool = False):
    self._tokenizer = tokenizer
    self._text_len = text_len
    self._keep_text = keep_text

  def map(self, element: dict[str, Any]) -> dict[str, Any]:
    text = element["text"]
    text = text.decode("utf-8") if isinstance(text, bytes) else text  # tfds' numpy decoding gives bytes.
    example = {
        "image": np.asarray(element["image"], dtype=np.float32) / 127.5 - 1.0,
        "audio": np.asarray(element["audio"], dtype=np.float32) / 32768.0,
        "text": tokenizer_lib.tokenize_to_length(self._tokenizer, text, self._text_len),
        **{field: np.asarray(element[field], dtype=np.int32)
           for field in ("label", "image_digit", "audio_digit", "text_digit", "image_heavy", "audio_heavy",
                         "text_heavy")},
    }
    if self._keep_text:
      example["text_string"] = text
    return example
