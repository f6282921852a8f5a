"""Accuracy, macro-F1 and the modality-reliance ablations of the classification evaluator."""
import numpy as np
import pytest

from mmjax.evaluators import classification_metrics
from mmjax.evaluators.classification import shuffled, zeroed


def test_macro_f1_by_hand():
  labels = np.array([0, 0, 1, 1, 2, 2])
  predicted = np.array([0, 1, 1, 1, 2, 0])
  # Per class: 0: P=1/2, R=1/2, F1=1/2; 1: P=2/3, R=1, F1=4/5; 2: P=1, R=1/2, F1=2/3; class 3 never
  # appears nor is predicted: F1 0. Macro over the 4 classes.
  metrics = classification_metrics(predicted, labels, num_classes=4)
  assert metrics["accuracy"] == pytest.approx(4 / 6)
  assert metrics["macro_f1"] == pytest.approx((1 / 2 + 4 / 5 + 2 / 3 + 0) / 4)


def test_perfect_and_constant_classifiers():
  labels = np.arange(10).repeat(3)
  assert classification_metrics(labels, labels, 10) == {"accuracy": 1.0, "macro_f1": 1.0}
  constant = classification_metrics(np.zeros_like(labels), labels, 10)
  assert constant["accuracy"] == pytest.approx(0.1)
  # Class 0: P=0.1, R=1 → F1=2/11; the other nine classes score 0.
  assert constant["macro_f1"] == pytest.approx(2 / 11 / 10)


def test_zeroed_and_shuffled_touch_only_their_field_and_valid_rows():
  rng = np.random.default_rng(0)
  batch = {"audio": np.arange(8.0)[:, None] * np.ones((8, 3)), "text": np.arange(8)[:, None] + np.ones((8, 2), int),
           "valid": np.arange(8) < 6}
  out = zeroed(batch, "audio", rng)
  assert not out["audio"].any() and out["text"] is batch["text"]
  out = shuffled(batch, "audio", np.random.default_rng(1))
  np.testing.assert_array_equal(out["audio"][6:], batch["audio"][6:])  # Padding rows stay put.
  assert sorted(out["audio"][:6, 0]) == list(range(6)) and (out["audio"][:6, 0] != np.arange(6)).any()
  np.testing.assert_array_equal(out["text"], batch["text"])
  np.testing.assert_array_equal(batch["audio"][:, 0], np.arange(8))  # The input batch is not modified.
