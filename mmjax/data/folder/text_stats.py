"""What a dataset's metadata says of its text, gathered one example at a time: the same for a folder dataset's
build (mmjax.data.folder.builder) and a prepared tfds dataset's scan (mmjax.data.prepared)."""
from __future__ import annotations

import collections
from collections.abc import Sequence
from typing import Any

from mmjax.data import tokenizer as tokenizer_lib

DEFAULT_QUESTION_TYPE = "all"


def normalize_answer(answer: str) -> str:
  """Lower case, single spaces, no final full stop: "Two dogs." and "two  dogs" are one answer."""
  return " ".join(answer.lower().split()).rstrip(".")


def _by_frequency(counter: collections.Counter) -> list[str]:
  """Most frequent first, ties in alphabetical order (the same list for the same data)."""
  return [item for item, _ in sorted(counter.items(), key=lambda item: (-item[1], item[0]))]


class TextStats:
  """Accumulates the class names, the train split's answers and word vocabulary, the question types, the longest
  text of each field (in words, with where it is) and the most captions of an example."""

  def __init__(self):
    self._vocab, self._answers = collections.Counter(), collections.Counter()
    self._labels, self._types = set(), set()
    self._longest: dict[str, list[Any]] = {}
    self._max_captions = 0

  def add(self, split: str, source: str, *, captions: Sequence[str] = (), question: str | None = None,
          answer: str | None = None, question_type: str | None = None, label: str | None = None) -> None:
    """One example of `split`, found at `source` (e.g. "train.jsonl:7")."""
    texts = {"captions": list(captions)}
    self._max_captions = max(self._max_captions, len(captions))
    if question is not None:
      texts.update(question=[question], answer=[answer])
      self._types.add(question_type or DEFAULT_QUESTION_TYPE)
      if split == "train":
        self._answers[normalize_answer(answer)] += 1
    if label is not None:
      self._labels.add(label)
    for field, field_texts in texts.items():
      for text in field_texts:
        words = tokenizer_lib.split_words(text)
        if split == "train":
          self._vocab.update(words)
        if len(words) > self._longest.get(field, [0])[0]:
          self._longest[field] = [len(words), source]

  def metadata(self, label_names: Sequence[str] = ()) -> dict[str, Any]:
    """The metadata entries; `label_names` fixes the classes (else the sorted labels seen)."""
    return {
        "label_names": list(label_names) or sorted(self._labels),
        "answers": _by_frequency(self._answers),
        "question_types": sorted(self._types) or [DEFAULT_QUESTION_TYPE],
        "vocab": [word for word in _by_frequency(self._vocab) if word not in tokenizer_lib.SPECIAL_TOKENS],
        "longest": dict(self._longest),
        "max_captions": self._max_captions,
    }
