"""Classification of (image[, text]) inputs, e.g. VQA over a fixed answer set."""
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from mmjax import errors


class ClassificationTask:
  """Cross-entropy on the integer label field `config.task.label` (e.g. "answer_id");
  `config.task.prompt` names the optional text input ("question", or "")."""

  def __init__(self, task_config: ml_collections.ConfigDict, model: nn.Module):
    if (task_config.prompt != "") != (model.text is not None):
      raise errors.ConfigError(f"config.task.prompt={task_config.prompt!r} needs a text encoder "
                               "(config.model.text) exactly when it is not empty.")
    self.model = model
    self.label, self.prompt = task_config.label, task_config.prompt or None
    self.batch_keys = ("image", self.label) + ((self.prompt,) if self.prompt else ())

  def _apply(self, params, batch):
    return self.model.apply({"params": params}, batch["image"], batch[self.prompt] if self.prompt else None)

  def init(self, rng: jax.Array, batch: dict[str, jax.Array]):
    return self.model.init(rng, batch["image"], batch[self.prompt] if self.prompt else None)

  def loss_fn(self, params, batch: dict[str, jax.Array], rng: jax.Array) -> tuple[jax.Array, dict]:
    del rng
    logits = self._apply(params, batch)
    labels = batch[self.label]
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    return loss, {"loss": loss, "accuracy": (logits.argmax(-1) == labels).mean()}

  def predict_fns(self) -> dict[str, Callable]:
    """`classify(params, batch)` → int[B] predicted class ids."""
    return {"classify": lambda params, batch: jnp.argmax(self._apply(params, batch), axis=-1)}
