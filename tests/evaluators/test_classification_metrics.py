"""Accuracy and macro-F1 of the classification evaluator (its modality reliance: test_reliance.py)."""
import numpy as np
import pytest

from mmjax.evaluators import classification_metrics


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

