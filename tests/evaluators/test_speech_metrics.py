"""Word and character error rates against hand-counted edits."""
import pytest

from mmjax.evaluators import error_rates


def test_error_rates_count_substitutions_deletions_and_insertions_over_the_references():
  # Words: "a x c" has 1 substitution, "d" 1 deletion: 2 edits / 5 reference words. Characters (spaces count):
  # 1 substitution in "a b c", 2 deletions (" e") in "d e": 3 edits / 8 reference characters.
  assert error_rates(["a x c", "d"], ["a b c", "d e"]) == pytest.approx(
      {"wer": 2 / 5, "cer": 3 / 8, "sentence_accuracy": 0.0})
  # Insertions: 1 word / 2, " three" 6 characters / 7; so WER and CER can pass 1.
  assert error_rates(["one two three"], ["one two"]) == pytest.approx(
      {"wer": 1 / 2, "cer": 6 / 7, "sentence_accuracy": 0.0})
  assert error_rates(["seven one one one"], ["one"])["wer"] == pytest.approx(3.0)


def test_words_are_split_on_white_space_and_a_perfect_transcript_scores_zero():
  metrics = error_rates(["a  small red  circle ", "two four"], ["a small red circle", "two four"])
  assert metrics["wer"] == 0.0 and metrics["sentence_accuracy"] == 1.0
  assert error_rates([""], ["two four"]) == pytest.approx({"wer": 1.0, "cer": 1.0, "sentence_accuracy": 0.0})
