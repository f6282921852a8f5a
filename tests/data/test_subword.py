"""WordPiece and CLIP BPE tokenizers against their reference implementations' recorded ids.

The reference (tests/fixtures/pretrained/tokenizer_reference.json) was recorded once by
make_tokenizer_reference.py: transformers' BERT tokenizers on all-MiniLM-L6-v2's files at length 128, open_clip's
tokenizer at length 77, over strings chosen to be hard (accents, CJK, emoji, control characters, mojibake, HTML
entities, a 135-character word, and strings one below, at and one above each length limit).
"""
import gzip
import json
import os
import pickle

import numpy as np
import pytest

from mmjax import errors
from mmjax.data import subword
from mmjax.data.tokenizer import tokenize_to_length
from mmjax.pretrained import files

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "pretrained", "tokenizer_reference.json")
MINILM = "all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def reference() -> dict:
  with open(FIXTURE, encoding="utf-8") as f:
    return json.load(f)


@pytest.fixture(scope="module")
def wordpiece() -> subword.WordPieceTokenizer:
  return subword.build_subword_tokenizer("wordpiece")


@pytest.fixture(scope="module")
def clip() -> subword.ClipBpeTokenizer:
  return subword.build_subword_tokenizer("clip_bpe")


def assert_ids_equal(tokenizer, strings: list[str], expected: list[list[int]], length: int) -> None:
  """Every string's ids equal the reference's; a failure names the first string that differs and where."""
  assert len(strings) == len(expected) >= 63
  for text, want in zip(strings, expected):
    got = tokenize_to_length(tokenizer, text, length)
    assert len(want) == length
    differ = np.flatnonzero(got != np.asarray(want))
    assert differ.size == 0, (f"{text!r}: first difference at position {differ[0]}: got {got.tolist()}, "
                              f"reference {want}")


def test_wordpiece_from_tokenizer_json_equals_transformers(wordpiece, reference):
  assert_ids_equal(wordpiece, reference["strings"], reference["wordpiece"]["fast"], 128)


def test_wordpiece_from_vocab_txt_equals_transformers(reference):
  vocab = os.path.join(files.resolve(MINILM, "test"), "vocab.txt")
  assert_ids_equal(subword.WordPieceTokenizer(vocab), reference["strings"], reference["wordpiece"]["fast"], 128)


def test_reference_bert_tokenizers_agree_but_on_the_known_final_sigma(reference):
  """mmjax follows the fast tokenizer; the pure-Python one differs only where the fixture says why."""
  wordpiece = reference["wordpiece"]
  differ = {text for text, fast, slow in zip(reference["strings"], wordpiece["fast"], wordpiece["slow"])
            if fast != slow}
  assert differ == set(reference["metadata"]["wordpiece_known_disagreements"]) == {"ΟΔΟΣ ΣΊΣΥΦΟΣ"}


def test_clip_bpe_equals_open_clip(clip, reference):
  assert_ids_equal(clip, reference["strings"], reference["clip_bpe"]["ids"], 77)


@pytest.mark.parametrize("name", ["wordpiece", "clip_bpe"])
def test_decode_equals_the_reference_decoding(name, wordpiece, clip, reference):
  """For text without special tokens: transformers' decode, and open_clip's without its trailing space."""
  tokenizer = {"wordpiece": wordpiece, "clip_bpe": clip}[name]
  checked = 0
  for text, want in zip(reference["strings"], reference[name]["decoded"]):
    ids = tokenizer.encode(text)
    if {tokenizer.bos_id, tokenizer.eos_id} & set(ids):
      continue  # "[SEP]" or "<end_of_text>" in the text: decode stops there, by design.
    assert tokenizer.decode(ids) == want.strip(), text
    checked += 1
  assert checked == len(reference["strings"]) - 1


def test_special_ids(wordpiece, clip):
  assert (wordpiece.vocab_size, wordpiece.pad_id, wordpiece.unk_id, wordpiece.bos_id, wordpiece.eos_id) == (
      30522, 0, 100, 101, 102)
  assert (clip.vocab_size, clip.pad_id, clip.unk_id, clip.bos_id, clip.eos_id) == (49408, 0, 49407, 49406, 49407)
  assert clip.encode("!~") == [0, 349]  # CLIP's pad id is also "!" starting a word ("!</w>" is 256), as in open_clip.
  for tokenizer in (wordpiece, clip):
    assert tokenizer.adds_bos and tokenizer.truncates
    assert tokenizer.encode("") == tokenizer.encode(" \t\n ") == []


@pytest.mark.parametrize("name, length", [("wordpiece", 128), ("clip_bpe", 77)])
def test_truncation_keeps_eos_last(name, length, wordpiece, clip, reference):
  tokenizer = {"wordpiece": wordpiece, "clip_bpe": clip}[name]
  # The fixture's strings of length - 1, length and length + 1 tokens, specials included, for this tokenizer.
  by_count = {len(tokenizer.encode(text)) + 2: text for text in reference["strings"]}
  shorter, exact, longer = (by_count[count] for count in (length - 1, length, length + 1))
  bos, eos, pad = tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id
  assert tokenize_to_length(tokenizer, shorter, length).tolist() == [bos, *tokenizer.encode(shorter), eos, pad]
  assert tokenize_to_length(tokenizer, exact, length).tolist() == [bos, *tokenizer.encode(exact), eos]
  assert tokenize_to_length(tokenizer, longer, length).tolist() == [bos, *tokenizer.encode(longer)[:length - 2], eos]


@pytest.mark.parametrize("name, length", [("wordpiece", 16), ("clip_bpe", 16)])
def test_decode_round_trips_simple_text(name, length, wordpiece, clip):
  tokenizer = {"wordpiece": wordpiece, "clip_bpe": clip}[name]
  text = "a dog runs after a red ball"
  ids = tokenize_to_length(tokenizer, text, length)
  assert ids[0] == tokenizer.bos_id and ids[-1] == tokenizer.pad_id
  assert tokenizer.decode(ids) == tokenizer.decode(ids.tolist()) == text
  # Decoding stops at the first eos.
  assert tokenizer.decode(list(ids[:4]) + [tokenizer.eos_id] + list(ids[4:])) == "a dog runs"


def test_clip_decodes_a_zero_before_eos_as_an_exclamation_mark(clip):
  ids = tokenize_to_length(clip, "stop!~", 8)
  assert ids.tolist() == [clip.bos_id, *clip.encode("stop"), 0, 349, clip.eos_id, 0, 0, 0]
  assert clip.decode(ids) == "stop !~"


def test_decode_rejects_ids_outside_the_vocabulary(wordpiece, clip):
  for tokenizer in (wordpiece, clip):
    with pytest.raises(ValueError, match="outside the vocabulary"):
      tokenizer.decode([5, tokenizer.vocab_size])


def test_tokenizers_survive_pickling(wordpiece, clip):
  """Grain's worker processes receive the preprocessing, tokenizer included, pickled."""
  text = "Ångström's naïve café: 3.14 👍🏽"
  for tokenizer in (wordpiece, clip):
    copy = pickle.loads(pickle.dumps(tokenizer))
    assert copy.encode(text) == tokenizer.encode(text) and copy.eos_id == tokenizer.eos_id


def test_unknown_name_lists_the_known_ones():
  with pytest.raises(errors.ConfigError, match=r"sentencepiece.*config\.data\.tokenizer.*clip_bpe.*wordpiece"):
    subword.build_subword_tokenizer("sentencepiece")


@pytest.mark.parametrize("name", ["wordpiece", "clip_bpe"])
def test_missing_path_names_it(name, tmp_path):
  missing = str(tmp_path / "nowhere" / "vocab")
  with pytest.raises(errors.ConfigError, match="nowhere"):
    subword.build_subword_tokenizer(name, missing, key="config.data.tokenizer_path")
  with pytest.raises(errors.ConfigError, match=f"{tmp_path}.*holds none of"):
    subword.build_subword_tokenizer(name, str(tmp_path))


def write(path, content: bytes) -> str:
  path.write_bytes(content)
  return str(path)


@pytest.mark.parametrize("file_name, content, message", [
    ("tokenizer.json", b"<html>not json</html>", "is not a tokenizers tokenizer.json"),
    ("vocab.txt", b"\xff\xfe\x00binary", "is not a WordPiece vocabulary"),
    ("vocab.txt", b"hello\nworld\n", r"has no \[PAD\] token"),
    ("vocab.txt", b"[UNK]\n[PAD]\n[CLS]\n[SEP]\n", r"gives \[PAD\] the id 1"),
])
def test_wordpiece_rejects_a_file_that_is_not_a_bert_vocabulary(file_name, content, message, tmp_path):
  path = write(tmp_path / file_name, content)
  with pytest.raises(errors.ConfigError, match=message) as raised:
    subword.WordPieceTokenizer(path)
  assert path in str(raised.value)


def test_wordpiece_rejects_another_model_type(tmp_path):
  bpe = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [], "normalizer": None,
         "pre_tokenizer": None, "post_processor": None, "decoder": None,
         "model": {"type": "BPE", "vocab": {"[PAD]": 0, "a": 1}, "merges": []}}
  path = write(tmp_path / "tokenizer.json", json.dumps(bpe).encode())
  with pytest.raises(errors.ConfigError, match="BPE tokenizer, not WordPiece"):
    subword.WordPieceTokenizer(path)


@pytest.mark.parametrize("content, message", [
    (b"plain text, not gzip", "is not a gzipped UTF-8 text file"),
    # mtime=0: the bytes (and so the test id) must be the same in every xdist worker.
    (gzip.compress(b"#version: 0.2\nt h\nth e</w>\n", mtime=0), "does not hold 48894 BPE merges"),
], ids=["not gzip", "too few merges"])
def test_clip_bpe_rejects_a_file_that_is_not_its_merges(content, message, tmp_path):
  path = write(tmp_path / "bpe_simple_vocab_16e6.txt.gz", content)
  with pytest.raises(errors.ConfigError, match=message) as raised:
    subword.build_subword_tokenizer("clip_bpe", path)
  assert path in str(raised.value)
