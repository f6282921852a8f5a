"""Subword tokenizers for natural language: BERT's WordPiece and CLIP's byte-level BPE.

A pretrained text encoder only understands the ids its own tokenizer gave it, so each class here reproduces a
reference implementation id for id (tests/data/test_subword.py checks them against recorded outputs):
`WordPieceTokenizer` matches transformers' BertTokenizerFast, `ClipBpeTokenizer` open_clip's SimpleTokenizer.
The subword algorithms themselves are the `tokenizers` library's; only what the references do around them
(CLIP's text cleaning and word split) is written here. Both satisfy `mmjax.data.tokenizer.Tokenizer`, start
model inputs with their bos token and, like their references, truncate too long a text (keeping eos last).
"""
from __future__ import annotations

import gzip
import html
from collections.abc import Sequence

import ftfy
import regex
import tokenizers
from tokenizers import decoders, models, normalizers, pre_tokenizers

from mmjax import errors
from mmjax.data.tokenizer import Tokenizer
from mmjax.pretrained import files


class _SubwordTokenizer:
  """What both tokenizers share: the Protocol's ids, and decoding through the `tokenizers` decoder."""

  adds_bos = True
  truncates = True

  def __init__(self, tokenizer: tokenizers.Tokenizer, *, pad_id: int, unk_id: int, bos_id: int, eos_id: int,
               skipped: frozenset[int]):
    self._tokenizer = tokenizer
    self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
    self.pad_id, self.unk_id, self.bos_id, self.eos_id = pad_id, unk_id, bos_id, eos_id
    self._skipped = skipped  # Ids that decode drops.

  def decode(self, ids: Sequence[int]) -> str:
    """The text of `ids` up to the first eos, without bos (and pad, where pad is not also a real token)."""
    kept = []
    for token_id in map(int, ids):
      if not 0 <= token_id < self.vocab_size:
        raise ValueError(f"Token id {token_id} is outside the vocabulary of {self.vocab_size} tokens.")
      if token_id == self.eos_id:
        break
      if token_id not in self._skipped:
        kept.append(token_id)
    return self._tokenizer.decode(kept, skip_special_tokens=False).strip()


# BERT's special tokens, as transformers' BertTokenizer names them.
_BERT_PAD, _BERT_UNK, _BERT_CLS, _BERT_SEP, _BERT_MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"


class WordPieceTokenizer(_SubwordTokenizer):
  """BERT's uncased WordPiece, as transformers' BertTokenizerFast (all-MiniLM-L6-v2's tokenizer).

  `path` is a `tokenizer.json`, a BERT `vocab.txt` or a folder holding either (tokenizer.json preferred: it states
  its own normalisation). A bare vocab.txt gets BERT-uncased's pipeline: BertNormalizer (control characters
  removed, CJK characters split apart, lower-casing, accents stripped) + BertPreTokenizer (whitespace and
  punctuation) + WordPiece with [UNK] and at most 100 characters a word. Ids: pad [PAD] (must be 0: models mask
  `ids != 0`), unk [UNK], bos [CLS], eos [SEP]. Bracketed special tokens written in the text, such as "[SEP]",
  become their ids, as in transformers.
  """

  def __init__(self, path: str, key: str = "config.data.tokenizer"):
    file = files.find(path, ("tokenizer.json", "vocab.txt"), key)
    tokenizer = _load_tokenizer_json(file, key) if file.endswith(".json") else _load_vocab_txt(file, key)
    tokenizer.no_truncation()  # tokenize_to_length truncates and pads; the file may set both.
    tokenizer.no_padding()
    ids = {}
    for token in (_BERT_PAD, _BERT_UNK, _BERT_CLS, _BERT_SEP):
      ids[token] = tokenizer.token_to_id(token)
      if ids[token] is None:
        raise errors.ConfigError(f"{key}: {file} has no {token} token; point it at a BERT (uncased) tokenizer.json "
                                 "or vocab.txt.")
    if ids[_BERT_PAD] != 0:
      raise errors.ConfigError(f"{key}: {file} gives {_BERT_PAD} the id {ids[_BERT_PAD]}, but mmjax's models mask "
                               "padding as id 0; use a vocabulary whose first entry is [PAD].")
    super().__init__(tokenizer, pad_id=0, unk_id=ids[_BERT_UNK], bos_id=ids[_BERT_CLS], eos_id=ids[_BERT_SEP],
                     skipped=frozenset((0, ids[_BERT_CLS])))

  def encode(self, text: str) -> list[int]:
    return self._tokenizer.encode(text, add_special_tokens=False).ids


def _load_tokenizer_json(file: str, key: str) -> tokenizers.Tokenizer:
  try:
    tokenizer = tokenizers.Tokenizer.from_file(file)
  except Exception as e:  # tokenizers raises a bare Exception for a bad file.
    raise errors.ConfigError(f"{key}: {file} is not a tokenizers tokenizer.json ({e}); point it at a BERT "
                             "model's tokenizer.json or vocab.txt.") from None
  if not isinstance(tokenizer.model, models.WordPiece):
    raise errors.ConfigError(f"{key}: {file} is a {type(tokenizer.model).__name__} tokenizer, not WordPiece; point "
                             "it at a BERT model's tokenizer.json or vocab.txt.")
  return tokenizer


def _load_vocab_txt(file: str, key: str) -> tokenizers.Tokenizer:
  """BERT-uncased's tokenizer over `file`, built as transformers' BertTokenizer builds it from a vocab.txt."""
  try:
    vocab = models.WordPiece.read_file(file)
  except Exception as e:
    raise errors.ConfigError(f"{key}: {file} is not a WordPiece vocabulary, one token a line ({e}); point it at a "
                             "BERT model's vocab.txt or tokenizer.json.") from None
  tokenizer = tokenizers.Tokenizer(models.WordPiece(vocab, unk_token=_BERT_UNK, max_input_chars_per_word=100))
  tokenizer.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None,
                                                    lowercase=True)
  tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
  tokenizer.decoder = decoders.WordPiece(prefix="##")
  tokenizer.add_special_tokens([token for token in (_BERT_PAD, _BERT_UNK, _BERT_CLS, _BERT_SEP, _BERT_MASK)
                                if token in vocab])
  return tokenizer


_CLIP_BOS, _CLIP_EOS = "<start_of_text>", "<end_of_text>"
# open_clip reads exactly this many merges (the rest of the file is unused), which fixes the vocabulary at
# 256 bytes + 256 bytes ending a word + 48,894 merges + bos and eos = 49,408 ids.
_CLIP_MERGES = 49152 - 256 - 2
_CLIP_VOCAB_SIZE = 2 * 256 + _CLIP_MERGES + 2
# open_clip's word split, letter for letter: its special tokens, English contractions, runs of letters, single
# digits, runs of anything else but whitespace. IGNORECASE matters even on lower-cased text: under it the classes
# compare case foldings, so a mark that folds to a letter (U+0345, the combining ypogegrammeni, folds to ι) is
# matched by neither \p{L} nor [^\s\p{L}\p{N}] and is dropped, as open_clip drops it.
_CLIP_WORD = regex.compile(
    rf"{_CLIP_BOS}|{_CLIP_EOS}|'s|'t|'re|'ve|'m|'ll|'d|[\p{{L}}]+|[\p{{N}}]|[^\s\p{{L}}\p{{N}}]+", regex.IGNORECASE)


class ClipBpeTokenizer(_SubwordTokenizer):
  """CLIP's byte-level BPE, as open_clip's SimpleTokenizer (the default, `clean="lower"` one).

  `path` is open_clip's `bpe_simple_vocab_16e6.txt.gz` (or a folder holding it). A text is cleaned as open_clip
  cleans it (ftfy's fix_text, HTML unescaped twice, whitespace collapsed, lower-cased) and split into words
  with open_clip's own regular expression (the `regex` module's Unicode tables: `tokenizers`' Split uses older
  ones and splits some recent letters differently); `tokenizers` then maps each word's UTF-8 bytes to
  characters (pre_tokenizers.ByteLevel) and applies the BPE merges, marking a word's last piece with "</w>".

  Ids: bos <start_of_text> = 49406, eos <end_of_text> = 49407; pad is 0, as open_clip pads, which is also the
  token "!" (the one that starts a longer word, as in "!~"; a lone "!" is "!</w>", 256). Padding only ever follows
  eos (tokenize_to_length keeps eos, mmjax.decoding pads after it), so decode stops at eos and reads a 0 before it
  as "!". Byte-level BPE has no unknown token (every byte is in the
  vocabulary) and `encode` never returns unk_id; it is eos, as transformers' CLIPTokenizer has it. Decoding
  gives open_clip's readable text: words and punctuation separated by spaces ("a dog , running !").
  """

  def __init__(self, path: str, key: str = "config.data.tokenizer"):
    file = files.find(path, ("bpe_simple_vocab_16e6.txt.gz",), key)
    merges = _read_clip_merges(file, key)
    # The byte-level characters in open_clip's bytes_to_unicode() order, which is code point order.
    chars = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = chars + [char + "</w>" for char in chars] + ["".join(merge) for merge in merges] + [_CLIP_BOS, _CLIP_EOS]
    ids = dict(zip(vocab, range(len(vocab))))  # As open_clip builds it: a repeated entry keeps its last id.
    if len(ids) != _CLIP_VOCAB_SIZE:
      raise errors.ConfigError(f"{key}: {file} makes a vocabulary of {len(ids)} tokens, not CLIP's "
                               f"{_CLIP_VOCAB_SIZE}; point it at open_clip's bpe_simple_vocab_16e6.txt.gz.")
    try:
      model = models.BPE(vocab=ids, merges=merges, end_of_word_suffix="</w>", fuse_unk=False)
    except Exception as e:  # A merge whose result is not in the vocabulary.
      raise errors.ConfigError(f"{key}: {file} is not a CLIP BPE merges file ({e}); point it at open_clip's "
                               "bpe_simple_vocab_16e6.txt.gz.") from None
    tokenizer = tokenizers.Tokenizer(model)
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tokenizer.decoder = decoders.Sequence([decoders.ByteLevel(), decoders.Replace("</w>", " ")])
    # A word the split found to be a special token's text becomes that token, as in open_clip.
    tokenizer.add_special_tokens([_CLIP_BOS, _CLIP_EOS])
    eos_id = ids[_CLIP_EOS]
    super().__init__(tokenizer, pad_id=0, unk_id=eos_id, bos_id=ids[_CLIP_BOS], eos_id=eos_id,
                     skipped=frozenset((ids[_CLIP_BOS],)))

  def encode(self, text: str) -> list[int]:
    words = _CLIP_WORD.findall(_clip_clean(text))
    if not words:
      return []
    return self._tokenizer.encode(words, is_pretokenized=True, add_special_tokens=False).ids


def _read_clip_merges(file: str, key: str) -> list[tuple[str, str]]:
  """The merges open_clip reads: lines 2 to 48,895 (the first is a version header), each two space-separated
  symbols."""
  try:
    with gzip.open(file) as f:
      lines = f.read().decode("utf-8").split("\n")
  except (OSError, EOFError, UnicodeDecodeError) as e:
    raise errors.ConfigError(f"{key}: {file} is not a gzipped UTF-8 text file ({e}); point it at open_clip's "
                             "bpe_simple_vocab_16e6.txt.gz.") from None
  merges = [tuple(line.split()) for line in lines[1:_CLIP_MERGES + 1]]
  if len(merges) < _CLIP_MERGES or any(len(merge) != 2 for merge in merges):
    raise errors.ConfigError(f"{key}: {file} does not hold {_CLIP_MERGES} BPE merges (a header line, then two "
                             "symbols a line); point it at open_clip's bpe_simple_vocab_16e6.txt.gz.")
  return merges


def _clip_clean(text: str) -> str:
  """open_clip's `_clean_lower`: basic_clean (mojibake and HTML entities repaired), whitespace_clean, lower()."""
  text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
  return " ".join(text.split()).lower()


TOKENIZERS = {"wordpiece": WordPieceTokenizer, "clip_bpe": ClipBpeTokenizer}
# The vocabulary each tokenizer reads when no path is given: names resolved by mmjax.pretrained.files.
DEFAULT_PATHS = {"wordpiece": "all-MiniLM-L6-v2", "clip_bpe": "clip-bpe"}


def build_subword_tokenizer(name: str, path: str = "", key: str = "config.data.tokenizer") -> Tokenizer:
  """The tokenizer `name` (a key of TOKENIZERS) over the vocabulary at `path` (a file, a folder or a known name;
  DEFAULT_PATHS[name] if empty). Every problem is a ConfigError naming `key`, the config key that chose it."""
  cls = errors.lookup(TOKENIZERS, name, "subword tokenizer", key)
  return cls(files.resolve(path or DEFAULT_PATHS[name], key), key=key)
