"""Contrastive image–text pretraining: softmax (InfoNCE, CLIP) and sigmoid (SigLIP) losses."""
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from mmjax import errors


def softmax_contrastive_loss(image_emb: jax.Array, text_emb: jax.Array, logit_scale: jax.Array,
                             negative_emb: jax.Array | None = None) -> jax.Array:
  """Symmetric InfoNCE: mean of image→text and text→image cross-entropy over the batch.

  image_emb, text_emb: unit vectors f32[B, D], pair i is (image i, text i).
  logit_scale: log of the inverse temperature.
  negative_emb: optional unit vectors f32[N, D] of texts that match no image in the
  batch; they join every image's candidates in the image→text term (NegCLIP).
  """
  scale = jnp.exp(logit_scale)
  logits = scale * image_emb @ text_emb.T
  labels = jnp.arange(logits.shape[0])
  i2t_logits = logits if negative_emb is None else jnp.concatenate(
      [logits, scale * image_emb @ negative_emb.T], axis=1)
  i2t = optax.softmax_cross_entropy_with_integer_labels(i2t_logits, labels)
  t2i = optax.softmax_cross_entropy_with_integer_labels(logits.T, labels)
  return (i2t.mean() + t2i.mean()) / 2


def sigmoid_contrastive_loss(image_emb: jax.Array, text_emb: jax.Array, logit_scale: jax.Array,
                             logit_bias: jax.Array, negative_emb: jax.Array | None = None) -> jax.Array:
  """SigLIP: every (image, text) pair is a binary problem; the loss is summed over texts
  and averaged over images, as in Zhai et al. 2023. `negative_emb` (f32[N, D]) adds N
  texts that are negatives for every image."""
  scale = jnp.exp(logit_scale)
  logits = scale * image_emb @ text_emb.T + logit_bias
  labels = 2 * jnp.eye(logits.shape[0]) - 1
  loss = -jax.nn.log_sigmoid(labels * logits).sum(-1)
  if negative_emb is not None:
    loss -= jax.nn.log_sigmoid(-(scale * image_emb @ negative_emb.T + logit_bias)).sum(-1)
  return loss.mean()


LOSSES = ("softmax", "sigmoid")


class ContrastiveTask:
  """loss_fn and predict_fns for a two-tower model; `config.task.loss` picks the loss.

  A batch may carry `negative_text` (from `config.data.hard_negatives`): captions
  that match none of the batch's images, added to the loss as extra negatives.
  """

  batch_keys = ("image", "text", "negative_text")

  def __init__(self, task_config: ml_collections.ConfigDict, model: nn.Module):
    if task_config.loss not in LOSSES:
      raise errors.ConfigError(f"Unknown contrastive loss {task_config.loss!r}; known: {list(LOSSES)}.")
    if (task_config.loss == "sigmoid") != (model.logit_bias_init is not None):
      raise errors.ConfigError("The sigmoid loss needs a learnable bias and the softmax loss has none: set "
                               "config.model.logit_bias_init (e.g. -10.0) iff config.task.loss='sigmoid'.")
    self.loss = task_config.loss
    self.model = model

  def init(self, rng: jax.Array, batch: dict[str, jax.Array]):
    return self.model.init(rng, batch["image"], batch["text"])

  def loss_fn(self, params, batch: dict[str, jax.Array], rng: jax.Array) -> tuple[jax.Array, dict]:
    del rng  # The model is deterministic (no dropout).
    (image_emb, text_emb), aux = self.model.apply({"params": params}, batch["image"], batch["text"])
    negative_emb = None
    if "negative_text" in batch:
      negative_emb, _ = self.model.apply({"params": params}, batch["negative_text"],
                                         method=self.model.encode_text)
    if self.loss == "softmax":
      loss = softmax_contrastive_loss(image_emb, text_emb, aux["logit_scale"], negative_emb)
    else:
      loss = sigmoid_contrastive_loss(image_emb, text_emb, aux["logit_scale"], aux["logit_bias"],
                                      negative_emb)
    return loss, {"loss": loss, "temperature": jnp.exp(-aux["logit_scale"])}

  def predict_fns(self) -> dict[str, Callable]:
    """Pure functions of (params, input) used by evaluators."""
    def embed_image(params, image):
      return self.model.apply({"params": params}, image, method=self.model.encode_image)[0]

    def embed_text(params, text):
      return self.model.apply({"params": params}, text, method=self.model.encode_text)[0]

    return {"embed_image": embed_image, "embed_text": embed_text}
