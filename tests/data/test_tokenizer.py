"""WordTokenizer and tokenize_to_length."""
import numpy as np
import pytest

from mmjax.data import shapes
from mmjax.data import tokenizer as tokenizer_lib


@pytest.fixture
def tokenizer() -> tokenizer_lib.WordTokenizer:
  return tokenizer_lib.WordTokenizer(shapes.VOCAB)


def test_special_ids_are_fixed_and_words_follow_in_order(tokenizer):
  assert (tokenizer.pad_id, tokenizer.unk_id, tokenizer.bos_id, tokenizer.eos_id) == (0, 1, 2, 3)
  assert tokenizer.vocab_size == 4 + len(shapes.VOCAB)
  assert tokenizer.encode(" ".join(shapes.VOCAB)) == list(range(4, 4 + len(shapes.VOCAB)))


def test_round_trip_of_a_caption(tokenizer):
  caption = "a small red circle left of a large blue square above a small green diamond"
  ids = tokenizer.encode(caption)
  assert len(ids) == len(caption.split())
  assert tokenizer.unk_id not in ids
  assert tokenizer.decode(ids) == caption


def test_lowercases_and_splits_punctuation(tokenizer):
  assert tokenizer.encode("A Small, RED circle.") == [
      tokenizer.encode("a")[0], tokenizer.encode("small")[0], tokenizer.unk_id,
      tokenizer.encode("red")[0], tokenizer.encode("circle")[0], tokenizer.unk_id]


def test_unknown_word_maps_to_unk(tokenizer):
  ids = tokenizer.encode("a small orange circle")
  assert ids[2] == tokenizer.unk_id
  assert tokenizer.decode(ids) == "a small <unk> circle"


def test_decode_stops_at_eos_and_skips_pad_and_bos(tokenizer):
  red, circle = tokenizer.encode("red circle")
  ids = [tokenizer.bos_id, red, tokenizer.pad_id, circle, tokenizer.eos_id, red, red]
  assert tokenizer.decode(ids) == "red circle"
  assert tokenizer.decode(np.array(ids, dtype=np.int32)) == "red circle"


def test_decode_rejects_ids_outside_the_vocabulary(tokenizer):
  with pytest.raises(ValueError, match="outside the vocabulary"):
    tokenizer.decode([4, tokenizer.vocab_size])


def test_vocabulary_may_not_contain_special_tokens():
  with pytest.raises(ValueError, match="clash"):
    tokenizer_lib.WordTokenizer(["a", "<pad>"])


def test_tokenize_to_length_appends_eos_and_zero_pads(tokenizer):
  tokens = tokenizer_lib.tokenize_to_length(tokenizer, "a large cyan triangle", 8)
  assert tokens.dtype == np.int32 and tokens.shape == (8,)
  np.testing.assert_array_equal(tokens[:5], tokenizer.encode("a large cyan triangle") + [tokenizer.eos_id])
  np.testing.assert_array_equal(tokens[5:], 0)
  assert tokenizer.decode(tokens) == "a large cyan triangle"


def test_tokenize_to_length_fits_exactly(tokenizer):
  tokens = tokenizer_lib.tokenize_to_length(tokenizer, "a large cyan triangle", 5)
  assert tokens[-1] == tokenizer.eos_id


def test_too_long_text_names_text_count_and_config_key(tokenizer):
  text = "a small red circle left of a large blue square"
  with pytest.raises(ValueError) as error:
    tokenizer_lib.tokenize_to_length(tokenizer, text, 10)
  message = str(error.value)
  assert repr(text) in message
  assert "10 tokens" in message
  assert "text_len" in message


def test_longest_caption_fits_the_configs_text_len(tokenizer):
  from configs import shapes_clip
  # "left of" is the longest connective, so three objects in one row make the longest caption.
  longest = shapes.caption_for([shapes.SceneObject(0, 0, 0, 0, col) for col in range(3)])
  assert len(tokenizer.encode(longest)) + 1 <= shapes_clip.get_config().data.text_len


def test_token_rows_are_tokenize_to_length_of_each_text():
  """Repeated texts give the same rows as tokenizing each; past `max_kept` rows the kept ones are dropped."""
  tokenizer = tokenizer_lib.WordTokenizer(["a", "red", "circle"])
  rows = tokenizer_lib.TokenRows(tokenizer, max_kept=2)
  texts = ["a red circle", "red", "a red circle", "circle a", "red"]
  for _ in range(2):
    got = rows(texts, 5)
    assert got.dtype == np.int32 and got.shape == (5, 5)
    for text, row in zip(texts, got):
      np.testing.assert_array_equal(row, tokenizer_lib.tokenize_to_length(tokenizer, text, 5))
  assert len(rows._rows) <= 3
