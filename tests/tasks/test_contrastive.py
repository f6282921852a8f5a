"""Contrastive losses on inputs whose values can be checked by hand."""
import jax.numpy as jnp
import numpy as np
import pytest

from mmjax.tasks import sigmoid_contrastive_loss, softmax_contrastive_loss


def test_softmax_loss_hand_computed():
  # Two orthogonal pairs, scale 1: logits = I, so each row's CE = log(e + 1) - 1.
  emb = jnp.eye(2)
  expected = np.log(np.e + 1) - 1
  np.testing.assert_allclose(softmax_contrastive_loss(emb, emb, jnp.log(1.0)), expected, rtol=1e-6)


def test_softmax_loss_is_symmetric_average():
  image = jnp.array([[1.0, 0.0], [0.6, 0.8]])
  text = jnp.array([[0.8, 0.6], [0.0, 1.0]])
  logits = 2.0 * np.asarray(image) @ np.asarray(text).T
  def ce(logits):
    return np.mean(np.log(np.exp(logits).sum(1)) - np.diag(logits))
  expected = (ce(logits) + ce(logits.T)) / 2
  np.testing.assert_allclose(softmax_contrastive_loss(image, text, jnp.log(2.0)), expected, rtol=1e-6)


def test_sigmoid_loss_hand_computed():
  emb = jnp.eye(2)
  # logits = 1 * I + b with b = -1: diagonal 0 (positive), off-diagonal -1 (negative).
  loss = sigmoid_contrastive_loss(emb, emb, jnp.log(1.0), jnp.asarray(-1.0))
  expected = (np.log(2) + np.log1p(np.exp(-1)))  # per image: one positive at 0, one negative at -1.
  np.testing.assert_allclose(loss, expected, rtol=1e-6)


def test_softmax_loss_adds_negatives_to_image_to_text_only():
  image = jnp.array([[1.0, 0.0], [0.6, 0.8]])
  text = jnp.array([[0.8, 0.6], [0.0, 1.0]])
  negatives = jnp.array([[0.6, 0.8], [1.0, 0.0], [0.0, -1.0]])
  logits = 2.0 * np.asarray(image) @ np.asarray(text).T
  i2t_logits = np.concatenate([logits, 2.0 * np.asarray(image) @ np.asarray(negatives).T], axis=1)
  def ce(logits):
    return np.mean(np.log(np.exp(logits).sum(1)) - np.diag(logits))
  expected = (ce(i2t_logits) + ce(logits.T)) / 2
  got = softmax_contrastive_loss(image, text, jnp.log(2.0), negative_emb=negatives)
  np.testing.assert_allclose(got, expected, rtol=1e-6)
  assert got > softmax_contrastive_loss(image, text, jnp.log(2.0))


def test_sigmoid_loss_counts_negatives_as_negative_pairs():
  emb = jnp.eye(2)
  # One extra negative equal to image 0's text: logit 1 - 1 = 0 for image 0, -1 for image 1.
  negatives = jnp.array([[1.0, 0.0]])
  loss = sigmoid_contrastive_loss(emb, emb, jnp.log(1.0), jnp.asarray(-1.0), negative_emb=negatives)
  base = np.log(2) + np.log1p(np.exp(-1))
  expected = base + (np.log(2) + np.log1p(np.exp(-1))) / 2
  np.testing.assert_allclose(loss, expected, rtol=1e-6)


@pytest.mark.parametrize("loss", ["softmax", "sigmoid"])
def test_losses_prefer_aligned_pairs(loss):
  aligned = jnp.eye(4)
  shuffled = aligned[jnp.array([1, 2, 3, 0])]
  args = (jnp.log(10.0),) + ((jnp.asarray(-5.0),) if loss == "sigmoid" else ())
  fn = softmax_contrastive_loss if loss == "softmax" else sigmoid_contrastive_loss
  assert fn(aligned, aligned, *args) < fn(aligned, shuffled, *args) - 1.0
