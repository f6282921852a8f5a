"""Text generation: −log p(y | inputs), for captioning, generative VQA and speech to text."""
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from mmjax import decoding
from mmjax.tasks.base import Task
from mmjax.tasks.inputs import ModelInputs


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


class GenerationTask(Task):
  """Trains a Captioner to generate the batch field `config.task.target` ("text": the caption, "answer")
  from the fields `config.task.inputs` maps to its modalities, and decodes with `config.decode`.

  `vocab_size` is the tokenizer's: decoding never picks an id beyond it, even where the decoder's
  embedding table is larger (config.model.decoder.vocab_size may round the vocabulary up).
  """

  def __init__(self, task_config: ml_collections.ConfigDict, model: nn.Module, *,
               decode_config: ml_collections.ConfigDict, bos_id: int, eos_id: int, vocab_size: int):
    decoding.check_decode_config(decode_config)
    self.model = model
    self.inputs = ModelInputs(task_config.inputs, model)
    self.target = task_config.target
    self.batch_keys = (*self.inputs.fields, self.target)
    self.decode_config = decode_config
    self.bos_id, self.eos_id, self.vocab_size = bos_id, eos_id, vocab_size

  def init(self, rng: jax.Array, batch: dict[str, jax.Array]):
    return self.model.init(rng, self.inputs(batch), shift_right(batch[self.target], self.bos_id))

  def loss_fn(self, params, batch: dict[str, jax.Array], rng: jax.Array) -> tuple[jax.Array, dict]:
    del rng  # The model is deterministic (no dropout).
    targets = batch[self.target]
    logits = self.model.apply({"params": params}, self.inputs(batch), shift_right(targets, self.bos_id))
    loss, accuracy = sequence_loss(logits, targets)
    return loss, {"loss": loss, "token_accuracy": accuracy}

  def loss_weight(self, batch: dict[str, jax.Array]) -> jax.Array:
    """The number of target tokens the loss averages, to weigh micro-batches (mmjax.tasks.accumulation)."""
    return jnp.maximum((batch[self.target] != 0).sum(), 1).astype(jnp.float32)

  def generate(self, params, batch: dict[str, jax.Array], length: int) -> jax.Array:
    """Decodes `length` tokens per example with `config.decode` → int[B, length] (0 after eos)."""
    model, variables = self.model, {"params": params}
    config = self.decode_config
    encoded, mask = model.apply(variables, self.inputs(batch), method=model.encode_tokens)
    state = model.apply(variables, encoded, mask, length, config.kv_cache, method=model.init_decode_state)

    def step_fn(tokens, index, state):
      return model.apply(variables, tokens, index, state, config.kv_cache, method=model.decode_step)

    return decoding.decode(step_fn, state, config, bos_id=self.bos_id, eos_id=self.eos_id,
                           rng=jax.random.PRNGKey(config.seed), max_len=length, vocab_size=self.vocab_size)

  def predict_fns(self) -> dict[str, Callable]:
    """`generate(params, batch)`: the target's length in tokens, decoded from the inputs."""
    def generate(params, batch):
      length = self.decode_config.max_len or batch[self.target].shape[1]
      return self.generate(params, batch, length)
    return {"generate": generate}
