"""Contrastive image–text pretraining: softmax (InfoNCE, CLIP) and sigmoid (SigLIP) losses."""
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax
import ml_collections
import optax

from mmjax import errors
from mmjax.tasks import accumulation
from mmjax.tasks.base import Task

# Unit image, text and (optional) hard-negative text embeddings of one batch.
Embeddings = tuple[jax.Array, jax.Array, jax.Array | None]


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


class ContrastiveTask(Task):
  """loss_fn and predict_fns for a two-tower model; `config.task.loss` picks the loss.

  A batch may carry `negative_text` (from `config.data.hard_negatives`): captions
  that match none of the batch's images, added to the loss as extra negatives.
  """

  batch_keys = ("image", "text", "negative_text")
  optional_keys = ("negative_text",)

  def __init__(self, task_config: ml_collections.ConfigDict, model: nn.Module):
    errors.check_choice(task_config.loss, LOSSES, "contrastive loss", "config.task.loss")
    if (task_config.loss == "sigmoid") != (model.logit_bias_init is not None):
      raise errors.ConfigError("The sigmoid loss needs a learnable bias and the softmax loss has none: set "
                               "config.model.logit_bias_init (e.g. -10.0) iff config.task.loss='sigmoid'.")
    self.loss = task_config.loss
    self.model = model

  def init(self, rng: jax.Array, batch: dict[str, jax.Array]):
    return self.model.init(rng, batch["image"], batch["text"])

  def _embed(self, params, batch: dict[str, jax.Array]) -> Embeddings:
    """(image, text, negative text or None) unit embeddings of a batch."""
    (image_emb, text_emb), _ = self.model.apply({"params": params}, batch["image"], batch["text"])
    negative_emb = None
    if "negative_text" in batch:
      negative_emb, _ = self.model.apply({"params": params}, batch["negative_text"],
                                         method=self.model.encode_text)
    return image_emb, text_emb, negative_emb

  def _loss(self, params, embeddings: Embeddings) -> tuple[jax.Array, dict]:
    """The loss of a batch's embeddings; it reads only the temperature (and bias) from params."""
    image_emb, text_emb, negative_emb = embeddings
    if self.loss == "softmax":
      loss = softmax_contrastive_loss(image_emb, text_emb, params["logit_scale"], negative_emb)
    else:
      loss = sigmoid_contrastive_loss(image_emb, text_emb, params["logit_scale"], params["logit_bias"],
                                      negative_emb)
    return loss, {"loss": loss, "temperature": jnp.exp(-params["logit_scale"])}

  def loss_fn(self, params, batch: dict[str, jax.Array], rng: jax.Array) -> tuple[jax.Array, dict]:
    del rng  # The model is deterministic (no dropout).
    return self._loss(params, self._embed(params, batch))

  def value_and_grad(self, params, batch: dict[str, jax.Array], rng: jax.Array,
                     steps: int = 1) -> tuple[tuple[jax.Array, dict], dict]:
    """The full batch's loss and gradient, computed `steps` micro-batches at a time (GradCache,
    Gao et al. 2021).

    Each example's negatives are the whole batch, so averaging micro-batch gradients would
    change the loss (negatives only from the micro-batch). Instead: (1) embed every micro-batch
    without keeping activations; (2) take the loss of all embeddings and its gradient with
    respect to them (and the temperature); (3) per micro-batch, recompute the embeddings and
    back-propagate that slice of the embedding gradient into the towers. Activation memory is
    that of one micro-batch, plus the [B, D] embeddings.
    """
    if steps == 1:
      return super().value_and_grad(params, batch, rng)
    del rng
    micro_batches = accumulation.split_micro_batches(batch, steps)
    micro_embeddings = lax.map(lambda micro: self._embed(params, micro), micro_batches)
    merge = lambda x: x.reshape(-1, *x.shape[2:])  # noqa: E731 — [steps, b, D] → [steps·b, D].
    loss_and_grads = jax.value_and_grad(self._loss, argnums=(0, 1), has_aux=True)
    (loss, metrics), (scalar_grads, embedding_grads) = loss_and_grads(params, jax.tree.map(merge, micro_embeddings))
    embedding_grads = jax.tree.map(lambda g, e: g.reshape(e.shape), embedding_grads, micro_embeddings)

    def backprop_micro_batch(grads, micro):
      micro_batch, cotangent = micro
      _, embed_vjp = jax.vjp(lambda p: self._embed(p, micro_batch), params)
      return jax.tree.map(jnp.add, grads, embed_vjp(cotangent)[0]), None

    grads, _ = lax.scan(backprop_micro_batch, scalar_grads, (micro_batches, embedding_grads))
    return (loss, metrics), grads

  def predict_fns(self) -> dict[str, Callable]:
    """Pure functions of (params, input) used by evaluators."""
    def embed_image(params, image):
      return self.model.apply({"params": params}, image, method=self.model.encode_image)[0]

    def embed_text(params, text):
      return self.model.apply({"params": params}, text, method=self.model.encode_text)[0]

    def image_features(params, image):
      return self.model.apply({"params": params}, image, method=self.model.image_features)

    return {"embed_image": embed_image, "embed_text": embed_text, "image_features": image_features}
