"""Tokenizers: a Protocol the pipeline depends on, and word- and character-level implementations.

Models only see the ids, so a WordPiece or BPE tokenizer can replace
`WordTokenizer` or `CharTokenizer` by satisfying `Tokenizer`. Every implementation keeps
`pad_id == 0`: models build attention masks from `ids != 0`.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from mmjax import errors

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
SPECIAL_TOKENS = (PAD, UNK, BOS, EOS)
# A word is a run of letters, digits or apostrophes; every other non-space
# character is a token on its own, so "circle." splits into "circle" and ".".
_TOKEN_PATTERN = re.compile(r"[\w']+|[^\w\s]")


def split_words(text: str) -> list[str]:
  """The lower-cased words and punctuation marks of `text`, as WordTokenizer sees them."""
  return _TOKEN_PATTERN.findall(text.lower())


class Tokenizer(Protocol):
  """What the pipeline and models need from a tokenizer."""

  @property
  def vocab_size(self) -> int: ...

  @property
  def pad_id(self) -> int: ...

  @property
  def unk_id(self) -> int: ...

  @property
  def bos_id(self) -> int: ...

  @property
  def eos_id(self) -> int: ...

  def encode(self, text: str) -> list[int]:
    """Token ids of `text`, without bos/eos."""
    ...

  def decode(self, ids: Sequence[int]) -> str:
    """Text of `ids` up to the first eos, skipping pad and bos."""
    ...

# Optional attributes, read with getattr(tokenizer, name, False) by tokenize_to_length:
#   adds_bos: the model input starts with bos ([CLS] for BERT, <start_of_text> for CLIP);
#   truncates: a text longer than the model's length is cut to it, keeping eos last, instead of an error.


class _SpecialIds:
  """Ids 0–3 of every tokenizer here: <pad>, <unk>, <bos>, <eos> (SPECIAL_TOKENS' order)."""

  @property
  def pad_id(self) -> int:
    return 0

  @property
  def unk_id(self) -> int:
    return 1

  @property
  def bos_id(self) -> int:
    return 2

  @property
  def eos_id(self) -> int:
    return 3


class WordTokenizer(_SpecialIds):
  """Lower-cased words and punctuation marks, each looked up in a fixed vocabulary.

  Ids 0–3 are <pad>, <unk>, <bos>, <eos>; the words of `vocab` follow in the
  given order, so the same vocabulary always gives the same ids.
  """

  def __init__(self, vocab: Sequence[str]):
    words = [word.lower() for word in vocab]
    clashes = sorted(set(words) & set(SPECIAL_TOKENS))
    if clashes:
      raise ValueError(f"Vocabulary words {clashes} clash with the special tokens {SPECIAL_TOKENS}.")
    if len(set(words)) != len(words):
      raise ValueError("Vocabulary words must be unique (after lower-casing).")
    self._tokens = list(SPECIAL_TOKENS) + words
    self._ids = {token: i for i, token in enumerate(self._tokens)}

  @property
  def vocab_size(self) -> int:
    return len(self._tokens)

  def encode(self, text: str) -> list[int]:
    return [self._ids.get(word, self.unk_id) for word in split_words(text)]

  def decode(self, ids: Sequence[int]) -> str:
    words = []
    for token_id in map(int, ids):
      if not 0 <= token_id < len(self._tokens):
        raise ValueError(f"Token id {token_id} is outside the vocabulary of {len(self._tokens)} tokens.")
      if token_id == self.eos_id:
        break
      if token_id not in (self.pad_id, self.bos_id):
        words.append(self._tokens[token_id])
    return " ".join(words)


class CharTokenizer(_SpecialIds):
  """One id per character of a fixed character vocabulary, for text where spelling matters
  (AV-Digits' typo-corrupted words, where a word vocabulary would map every typo to unk).

  Ids 0–3 are <pad>, <unk>, <bos>, <eos>, as in WordTokenizer; the characters of `chars`
  follow in the given order. Text is not lower-cased: case is part of the spelling.
  Decoding shows unknown characters as U+FFFD (the Unicode replacement character).
  """

  UNK_CHAR = "\N{REPLACEMENT CHARACTER}"

  def __init__(self, chars: Sequence[str]):
    chars = list(chars)
    not_chars = [char for char in chars if len(char) != 1]
    if not_chars:
      raise ValueError(f"Vocabulary entries {not_chars} are not single characters.")
    if len(set(chars)) != len(chars):
      raise ValueError("Vocabulary characters must be unique.")
    self._chars = chars
    self._ids = {char: i + len(SPECIAL_TOKENS) for i, char in enumerate(chars)}

  @property
  def vocab_size(self) -> int:
    return len(SPECIAL_TOKENS) + len(self._chars)

  def encode(self, text: str) -> list[int]:
    return [self._ids.get(char, self.unk_id) for char in text]

  def decode(self, ids: Sequence[int]) -> str:
    chars = []
    for token_id in map(int, ids):
      if not 0 <= token_id < self.vocab_size:
        raise ValueError(f"Token id {token_id} is outside the vocabulary of {self.vocab_size} tokens.")
      if token_id == self.eos_id:
        break
      if token_id == self.unk_id:
        chars.append(self.UNK_CHAR)
      elif token_id >= len(SPECIAL_TOKENS):
        chars.append(self._chars[token_id - len(SPECIAL_TOKENS)])
    return "".join(chars)


def tokenize_to_length(tokenizer: Tokenizer, text: str, length: int, length_key: str = "text_len") -> np.ndarray:
  """`text`'s ids (after bos, if the tokenizer `adds_bos`) followed by eos and zero padding: i32[length].

  Too long a text is an error rather than a truncation, unless the tokenizer `truncates` (the natural-language
  tokenizers of mmjax.data.subword, as their reference implementations do): a cut-off caption loses its eos,
  and text encoders pool at the eos position, so a truncated text keeps eos last. `length_key` names the data
  config key that sets `length`, for the error message.
  """
  ids = ([tokenizer.bos_id] if getattr(tokenizer, "adds_bos", False) else []) + tokenizer.encode(text)
  ids.append(tokenizer.eos_id)
  if len(ids) > length:
    if not getattr(tokenizer, "truncates", False):
      raise errors.InputError(
          f"Text {text!r} has {len(ids) - 1} tokens; with eos it needs {len(ids)} > {length_key}={length}. "
          f"Raise config.data.{length_key} to at least {len(ids)}.")
    ids = ids[:length - 1] + [tokenizer.eos_id]
  tokens = np.full((length,), tokenizer.pad_id, dtype=np.int32)
  tokens[:len(ids)] = ids
  return tokens


class TokenRows:
  """`tokenize_to_length` of a batch of texts, i32[len(texts), length], each distinct (text, length) tokenized
  once per process: captions, questions and answers repeat across a dataset, and tokenizing in Python was a
  sixth of the Shapes loader's time. At most `max_kept` rows are kept (~30 MB at the default)."""

  def __init__(self, tokenizer: Tokenizer, max_kept: int = 1 << 17):
    self._tokenizer, self._max_kept = tokenizer, max_kept
    self._rows: dict[tuple[str, int], np.ndarray] = {}

  def __call__(self, texts: Sequence[str], length: int, length_key: str = "text_len") -> np.ndarray:
    return np.stack([self.row(text, length, length_key) for text in texts])

  def row(self, text: str, length: int, length_key: str = "text_len") -> np.ndarray:
    """`tokenize_to_length` of one text: the kept row itself, read-only."""
    row = self._rows.get((text, length))
    if row is None:
      if len(self._rows) >= self._max_kept:
        self._rows.clear()
      row = self._rows[text, length] = tokenize_to_length(self._tokenizer, text, length, length_key)
      row.flags.writeable = False
    return row
