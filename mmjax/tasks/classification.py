"""Classification of multimodal inputs: VQA over a fixed answer set, AV-Digits over text+image+audio."""
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from mmjax import errors
from mmjax.tasks.base import Task
from mmjax.tasks.inputs import ModelInputs


class ClassificationTask(Task):
  """Cross-entropy on the integer label field `config.task.label` (e.g. "answer_id").

  `config.task.inputs` maps each of the model's modalities to the batch field it reads, e.g.
  {"image": "image", "text": "question"}; the model takes the {modality: array} dict and returns
  (logits, aux). Fusions with per-modality heads (late, hybrid) put their logits in
  aux["unimodal_logits"]; `config.task.unimodal_loss_weight` adds the mean of their
  cross-entropies to the loss, so every head learns to classify on its own (a vote or a learned
  weighting of heads that were never trained alone has nothing to combine).

  `config.task.score` (optional; "" or absent: none) names a float batch field that the model's score head
  (Classifier.score_head) regresses with an L1 loss, weighted by `config.task.score_loss_weight` (the
  CMU-MOSI practice: classes and a continuous sentiment score from one model); `label_and_score` then predicts
  both.
  """

  def __init__(self, task_config: ml_collections.ConfigDict, model: nn.Module):
    self.model = model
    self.inputs = ModelInputs(task_config.inputs, model)
    self.label = task_config.label
    self.unimodal_loss_weight = task_config.unimodal_loss_weight
    # Optional keys: only the configs that regress a score (configs/sentiment.py) set them.
    self.score = task_config.get("score", "")
    self.score_loss_weight = task_config.get("score_loss_weight", 1.0)
    if self.score and not getattr(model, "score_head", False):
      raise errors.ConfigError(f"config.task.score={self.score!r} needs a model with a score head: set "
                               "config.model.score_head=True.")
    self.batch_keys = (*self.inputs.fields, self.label, *([self.score] if self.score else []))

  def _apply(self, params, batch):
    return self.model.apply({"params": params}, self.inputs(batch))

  def init(self, rng: jax.Array, batch: dict[str, jax.Array]):
    return self.model.init(rng, self.inputs(batch))

  def loss_fn(self, params, batch: dict[str, jax.Array], rng: jax.Array) -> tuple[jax.Array, dict]:
    del rng
    logits, aux = self._apply(params, batch)
    labels = batch[self.label]
    cross_entropy = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    metrics = {"cross_entropy": cross_entropy, "accuracy": (logits.argmax(-1) == labels).mean()}
    loss = cross_entropy
    if self.score:
      absolute_error = jnp.abs(aux["score"] - batch[self.score]).mean()
      metrics["score_mae"] = absolute_error
      loss = loss + self.score_loss_weight * absolute_error
    if aux["unimodal_logits"] and self.unimodal_loss_weight:
      unimodal = {m: optax.softmax_cross_entropy_with_integer_labels(x, labels).mean()
                  for m, x in aux["unimodal_logits"].items()}
      metrics.update({f"cross_entropy/{m}": value for m, value in unimodal.items()})
      loss = loss + self.unimodal_loss_weight * sum(unimodal.values()) / len(unimodal)
    return loss, {"loss": loss, **metrics}

  def predict_fns(self) -> dict[str, Callable]:
    """`classify(params, batch)` → int[B] predicted class ids; with a score, also `label_and_score(params,
    batch)` → {"label": int[B], "score": f32[B]} from one forward pass."""
    fns = {"classify": lambda params, batch: jnp.argmax(self._apply(params, batch)[0], axis=-1)}
    if self.score:
      def label_and_score(params, batch):
        logits, aux = self._apply(params, batch)
        return {"label": jnp.argmax(logits, axis=-1), "score": aux["score"]}
      fns["label_and_score"] = label_and_score
    return fns
