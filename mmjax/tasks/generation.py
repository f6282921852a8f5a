"""Text generation: −log p(y | x_text, x_image), for captioning and generative VQA."""
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from mmjax import decoding, errors


def shift_right(targets: jax.Array, bos_id: int) -> jax.Array:
  """Teacher forcing inputs: int[B, L] targets (y_0, …, eos, pad…) → (bos, y_0, …, y_{L-2})."""
  return jnp.concatenate([jnp.full_like(targets[:, :1], bos_id), targets[:, :-1]], axis=1)


def sequence_loss(logits: jax.Array, targets: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Mean token cross-entropy and teacher-forced token accuracy over the non-padding targets.

  Averaged over all target tokens of the batch (not per sequence first), so every token
  counts the same whatever its caption's length.
  """
  valid = (targets != 0).astype(jnp.float32)
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
  count = jnp.maximum(valid.sum(), 1.0)
  accuracy = ((logits.argmax(-1) == targets) * valid).sum() / count
  return (losses * valid).sum() / count, accuracy


class GenerationTask:
  """Trains a Captioner on (image[, prompt]) → target text and decodes with `config.decode`.

  `config.task.target` names the batch field to generate ("text": the caption, "answer");
  `config.task.prompt` the optional text input ("question", or "" for none).
  """

  def __init__(self, task_config: ml_collections.ConfigDict, model: nn.Module, *,
               decode_config: ml_collections.ConfigDict, bos_id: int, eos_id: int):
    if (task_config.prompt != "") != (model.text is not None):
      raise errors.ConfigError(f"config.task.prompt={task_config.prompt!r} needs a text encoder "
                               "(config.model.text) exactly when it is not empty.")
    decoding.check_decode_config(decode_config)
    self.model = model
    self.target, self.prompt = task_config.target, task_config.prompt or None
    self.batch_keys = ("image", self.target) + ((self.prompt,) if self.prompt else ())
    self.decode_config = decode_config
    self.bos_id, self.eos_id = bos_id, eos_id

  def _prompt(self, batch):
    return batch[self.prompt] if self.prompt else None

  def init(self, rng: jax.Array, batch: dict[str, jax.Array]):
    targets = batch[self.target]
    return self.model.init(rng, batch["image"], shift_right(targets, self.bos_id), self._prompt(batch))

  def loss_fn(self, params, batch: dict[str, jax.Array], rng: jax.Array) -> tuple[jax.Array, dict]:
    del rng  # The model is deterministic (no dropout).
    targets = batch[self.target]
    logits = self.model.apply({"params": params}, batch["image"], shift_right(targets, self.bos_id),
                              self._prompt(batch))
    loss, accuracy = sequence_loss(logits, targets)
    return loss, {"loss": loss, "token_accuracy": accuracy}

  def loss_weight(self, batch: dict[str, jax.Array]) -> jax.Array:
    """The number of target tokens the loss averages, to weigh micro-batches (mmjax.accumulation)."""
    return jnp.maximum((batch[self.target] != 0).sum(), 1).astype(jnp.float32)

  def generate(self, params, batch: dict[str, jax.Array], length: int) -> jax.Array:
    """Decodes `length` tokens per example with `config.decode` → int[B, length] (0 after eos)."""
    model, variables = self.model, {"params": params}
    config = self.decode_config
    encoded, mask = model.apply(variables, batch["image"], self._prompt(batch), method=model.encode)
    state = model.apply(variables, encoded, mask, length, config.kv_cache, method=model.init_decode_state)

    def step_fn(tokens, index, state):
      return model.apply(variables, tokens, index, state, config.kv_cache, method=model.decode_step)

    return decoding.decode(step_fn, state, config, bos_id=self.bos_id, eos_id=self.eos_id,
                           rng=jax.random.PRNGKey(config.seed), max_len=length)

  def predict_fns(self) -> dict[str, Callable]:
    """`generate(params, batch)`: the target's length in tokens, decoded from image and prompt."""
    def generate(params, batch):
      length = self.decode_config.max_len or batch[self.target].shape[1]
      return self.generate(params, batch, length)
    return {"generate": generate}
