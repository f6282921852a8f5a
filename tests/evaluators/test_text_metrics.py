"""Caption and VQA metrics against hand-computed examples and an independent CIDEr-D."""
from collections import Counter
import math

import numpy as np
import pytest

from mmjax.evaluators import caption_metrics, majority_answers, token_accuracy, vqa_accuracy


def test_bleu_hand_computed():
  # Clipped n-gram precisions 3/4, 2/3, 1/2, 0/1; equal lengths, so no brevity penalty.
  metrics = caption_metrics(["a b c d"], [["a b c e"]])
  assert metrics["bleu1"] == pytest.approx(3 / 4, rel=1e-6)
  assert metrics["bleu2"] == pytest.approx(math.sqrt(3 / 4 * 2 / 3), rel=1e-6)
  assert metrics["bleu3"] == pytest.approx((3 / 4 * 2 / 3 * 1 / 2) ** (1 / 3), rel=1e-6)
  assert metrics["bleu4"] < 1e-3
  assert metrics["exact_match"] == 0.0


def test_bleu_brevity_penalty():
  # Every unigram matches, but the hypothesis is half the reference's length: BP = e^(1 - 4/2).
  assert caption_metrics(["a b"], [["a b c d"]])["bleu1"] == pytest.approx(math.exp(-1), rel=1e-6)


def _ngrams(sentence: str, n: int) -> Counter:
  words = sentence.split()
  return Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))


def _cider_d(hypotheses, references, sigma=6.0):
  """CIDEr-D as defined by Vedantam et al. 2015 and coco-caption: tf-idf n-gram vectors
  (n = 1..4, idf over the images' reference sets), clipped hypothesis counts, a Gaussian
  penalty on the difference in length (counted in bigrams, as coco-caption does), ×10."""
  num_images = len(references)
  df = Counter(g for refs in references for g in {g for r in refs for n in range(1, 5) for g in _ngrams(r, n)})

  def vector(sentence, n):
    return {g: c * (math.log(num_images) - math.log(max(1.0, df[g]))) for g, c in _ngrams(sentence, n).items()}

  scores = []
  for hypothesis, refs in zip(hypotheses, references):
    per_ref = []
    for ref in refs:
      delta = sum(_ngrams(hypothesis, 2).values()) - sum(_ngrams(ref, 2).values())
      sims = []
      for n in range(1, 5):
        h, r = vector(hypothesis, n), vector(ref, n)
        dot = sum(min(h[g], r[g]) * r[g] for g in h if g in r)
        norms = math.sqrt(sum(v * v for v in h.values())) * math.sqrt(sum(v * v for v in r.values()))
        sims.append(dot / norms * math.exp(-delta ** 2 / (2 * sigma ** 2)) if norms else 0.0)
      per_ref.append(np.mean(sims))
    scores.append(10 * np.mean(per_ref))
  return float(np.mean(scores))


def test_cider_d_matches_the_definition():
  references = [["a small red circle", "a red circle"],
                ["a large blue square left of a small red circle"],
                ["a large green diamond above a small cyan square"],
                ["a small yellow triangle"]]
  hypotheses = ["a small red circle", "a large blue square above a small red circle",
                "a large green diamond", "a small purple triangle"]
  assert caption_metrics(hypotheses, references)["cider_d"] == pytest.approx(
      _cider_d(hypotheses, references), rel=1e-6)


def test_cider_d_of_perfect_captions_is_ten():
  # Each has 4-grams; a shorter caption scores 0 for the n-grams it lacks.
  references = [["a b c d"], ["e f g h i"], ["j k l m"]]
  metrics = caption_metrics([r[0] for r in references], references)
  assert metrics["cider_d"] == pytest.approx(10.0, rel=1e-6)
  assert metrics["bleu4"] == pytest.approx(1.0, rel=1e-6)
  assert metrics["exact_match"] == 1.0


def test_token_accuracy_counts_reference_tokens_only():
  targets = np.array([[5, 6, 3, 0], [7, 3, 0, 0]])
  generated = np.array([[5, 9, 3, 4], [7, 3, 0, 0]])  # One of 5 reference tokens wrong.
  assert token_accuracy(generated, targets) == pytest.approx(4 / 5)


def test_vqa_accuracy_per_type():
  predicted = ["yes", "no", "red", "two", "red"]
  answers = ["yes", "yes", "red", "two", "blue"]
  types = np.array([0, 0, 1, 2, 1])
  metrics = vqa_accuracy(predicted, answers, types, ["exists", "colour", "count", "shape"])
  assert metrics == {"accuracy": pytest.approx(3 / 5), "accuracy/exists": 0.5, "accuracy/colour": 0.5,
                     "accuracy/count": 1.0}
  # An answer the tokenizer cannot write (None) matches nothing, not even the unknown token.
  assert vqa_accuracy(["<unk>", "red"], [None, "red"], np.array([1, 1]), ["exists", "colour"])["accuracy"] == 0.5


def test_majority_answers_per_type():
  answers = ["yes", "no", "no", "red", "blue", "blue", "blue"]
  types = [0, 0, 0, 1, 1, 1, 1]
  assert majority_answers(answers, types) == {0: "no", 1: "blue"}
