"""Retrieval recall and zero-shot metrics against hand-computed examples."""
import jax
import numpy as np
import pytest

from mmjax.evaluators import class_prompts, recall_at_k, zero_shot_accuracy
from mmjax.evaluators.common import process_batches


def test_recall_hand_computed():
  image = np.array([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]])
  # Text 0 is closest to image 2, texts 1 and 2 to their own images.
  text = np.array([[0.6, 0.8], [0.0, 1.0], [0.71, 0.7]])
  metrics = recall_at_k(image, text, groups=np.array([0, 1, 2]), ks=(1, 2, 3))
  # i2t top-1: image0→text2 (0.71) ✗, image1→text1 ✓, image2→text2 ✓.
  assert metrics["i2t_r1"] == pytest.approx(2 / 3)
  # t2i top-1: text0→image2 (0.98) ✗, text1→image1 ✓, text2→image2 (0.987) ✓.
  assert metrics["t2i_r1"] == pytest.approx(2 / 3)
  # Top-2 of image0 is text2, text0 ✓.
  assert metrics["i2t_r2"] == pytest.approx(1.0)
  # Top-2 of text0 is image2 (0.98), image1 (0.8): still ✗; image0 (0.6) comes third.
  assert metrics["t2i_r2"] == pytest.approx(2 / 3)
  assert metrics["t2i_r3"] == pytest.approx(1.0)


def test_recall_counts_identical_captions_as_correct():
  image = np.array([[1.0, 0.0], [0.0, 1.0]])
  text = np.array([[0.0, 1.0], [1.0, 0.0]])  # Each image prefers the other's text.
  assert recall_at_k(image, text, groups=np.array([0, 1]), ks=(1,))["i2t_r1"] == 0.0
  assert recall_at_k(image, text, groups=np.array([7, 7]), ks=(1,))["i2t_r1"] == 1.0


def test_recall_chance_level():
  emb = np.eye(4)
  assert recall_at_k(emb, emb, groups=np.array([0, 0, 1, 2]))["chance_r1"] == pytest.approx((2 / 4 * 2 + 1 / 4 * 2) / 4)


def test_class_prompts_ensemble_other_attributes():
  classes = {"colour": ["red", "blue"], "size": ["small", "large"], "shape": ["circle"]}
  prompts = class_prompts("a {size} {colour} {shape}", "colour", classes)
  assert prompts == [["a small red circle", "a large red circle"],
                     ["a small blue circle", "a large blue circle"]]
  with pytest.raises(ValueError, match="no {texture} placeholder"):
    class_prompts("a {colour} thing", "texture", classes)


def test_zero_shot_accuracy():
  image = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1]])
  classes = np.array([[1.0, 0.0], [0.0, 1.0]])
  assert zero_shot_accuracy(image, classes, np.array([0, 1, 1])) == pytest.approx(2 / 3)


def test_process_batches_give_every_host_built_row_once_in_order(monkeypatch):
  """Prompts every process builds in full: gathered over 3 processes the way predict_over
  gathers (global batch = the processes' local batches in order), each row comes once."""
  rows = {"text": np.arange(20).reshape(10, 2)}
  monkeypatch.setattr(jax, "process_count", lambda: 3)
  per_process = []
  for index in range(3):
    monkeypatch.setattr(jax, "process_index", lambda index=index: index)
    per_process.append(process_batches(rows, batch_size=2))
  assert [len(batches) for batches in per_process] == [2, 2, 2]
  gathered = {key: np.concatenate([batches[step][key] for step in range(2) for batches in per_process])
              for key in ("text", "valid")}
  np.testing.assert_array_equal(gathered["text"][gathered["valid"]], rows["text"])
  assert gathered["valid"].sum() == 10
