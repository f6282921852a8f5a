"""Text generation: −log p(y | inputs), for captioning, generative VQA and speech to text."""
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from mmjax import decoding, errors
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

  `config.task.auxiliary` (optional) = {target, without, weight}: the same model also learns to generate the
  field `target` from the inputs with the fields `without` zeroed (all padding), and the loss is the main
  target's plus `weight` times that one — e.g. VQA that also captions the image with the question blanked
  (multi-task generation, as BLIP/LAVIS train one decoder on several targets): every caption word is a target,
  where an answer is one word. With `without` empty both targets are decoded from one encoding of the inputs
  (the encoders and fusion run once per step instead of twice). Gradient accumulation weighs micro-batches by
  the main target's tokens.

  `config.task.prompt` (optional) names a token field the decoder reads before bos, a prefix-LM prompt (as
  PaLI and SimVLM give the decoder the question): every answer query then attends to the prompt's tokens, where
  without one the first answer token's query is the same for every question. The loss covers the target only;
  decoding prefills the prompt into the cache. The decoder's max_len must cover prompt + target.
  """

  def __init__(self, task_config: ml_collections.ConfigDict, model: nn.Module, *,
               decode_config: ml_collections.ConfigDict, bos_id: int, eos_id: int, vocab_size: int):
    decoding.check_decode_config(decode_config)
    self.model = model
    self.inputs = ModelInputs(task_config.inputs, model)
    self.target = task_config.target
    self.auxiliary = _auxiliary(task_config.get("auxiliary"), self.inputs.fields)
    self.prompt = task_config.get("prompt") or None
    self.batch_keys = tuple(dict.fromkeys((*self.inputs.fields, self.target, *([self.prompt] if self.prompt else []),
                                           *([self.auxiliary["target"]] if self.auxiliary else []))))
    self.decode_config = decode_config
    self.bos_id, self.eos_id, self.vocab_size = bos_id, eos_id, vocab_size

  def init(self, rng: jax.Array, batch: dict[str, jax.Array]):
    return self.model.init(rng, self.inputs(batch), self.decoder_input(batch, batch[self.target]))

  def decoder_input(self, batch: dict[str, jax.Array], targets: jax.Array) -> jax.Array:
    """Teacher forcing for `targets` int[B, L]: (bos, y_0, …, y_{L-2}), after the prompt's tokens where the task
    has one; the last L positions of the logits are the targets'."""
    return self._teacher_forcing(targets, self._prompt(batch))

  def _teacher_forcing(self, targets: jax.Array, prompt: jax.Array | None) -> jax.Array:
    shifted = shift_right(targets, self.bos_id)
    return shifted if prompt is None else jnp.concatenate([prompt, shifted], axis=1)

  def _prompt(self, batch: dict[str, jax.Array]) -> jax.Array | None:
    return batch[self.prompt].astype(jnp.int32) if self.prompt else None

  def loss_fn(self, params, batch: dict[str, jax.Array], rng: jax.Array) -> tuple[jax.Array, dict]:
    del rng  # The model is deterministic (no dropout).
    inputs = self.inputs(batch)
    encoded = self._encode(params, inputs)
    loss, accuracy = self._sequence_loss(params, encoded, batch[self.target], self._prompt(batch))
    metrics = {"token_accuracy": accuracy}
    if self.auxiliary:
      if self.auxiliary["without"]:
        # The barrier keeps XLA from constant-folding the encoder of an all-padding input at compile time
        # (seconds of "Constant folding an instruction is taking > 1s" for no gain).
        encoded = self._encode(params, {
            m: jax.lax.optimization_barrier(jnp.zeros_like(x)) if self.inputs.mapping[m] in self.auxiliary["without"]
            else x for m, x in inputs.items()})
      target = self.auxiliary["target"]
      metrics[f"{target}_loss"], metrics[f"{target}_token_accuracy"] = self._sequence_loss(
          params, encoded, batch[target])
      metrics[f"{self.target}_loss"] = loss
      loss = loss + self.auxiliary["weight"] * metrics[f"{target}_loss"]
    return loss, {"loss": loss, **metrics}

  def _encode(self, params, inputs: dict[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
    return self.model.apply({"params": params}, inputs, method=self.model.encode_tokens)

  def _sequence_loss(self, params, encoded: tuple[jax.Array, jax.Array], targets: jax.Array,
                     prompt: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    logits = self.model.apply({"params": params}, self._teacher_forcing(targets, prompt), *encoded,
                              method=self.model.decode)
    return sequence_loss(logits[:, logits.shape[1] - targets.shape[1]:], targets)

  def loss_weight(self, batch: dict[str, jax.Array]) -> jax.Array:
    """The number of target tokens the loss averages, to weigh micro-batches (mmjax.tasks.accumulation)."""
    return jnp.maximum((batch[self.target] != 0).sum(), 1).astype(jnp.float32)

  def generate(self, params, batch: dict[str, jax.Array], length: int) -> jax.Array:
    """Decodes `length` tokens per example with `config.decode` → int[B, length] (0 after eos)."""
    model, variables = self.model, {"params": params}
    config = self.decode_config
    encoded, mask = model.apply(variables, self.inputs(batch), method=model.encode_tokens)
    prompt = self._prompt(batch)
    offset = 0 if prompt is None else prompt.shape[1]
    state = model.apply(variables, encoded, mask, offset + length, config.kv_cache, method=model.init_decode_state)

    def step_at(tokens, position, state):  # `position` counts from the prompt's first token.
      return model.apply(variables, tokens, position, state, config.kv_cache, method=model.decode_step)

    if prompt is not None:  # Prefill: the prompt's tokens go through the decoder before bos, one step each.
      state = jax.lax.fori_loop(0, offset, lambda i, state: step_at(prompt[:, i], i, state)[1], state)

    def step_fn(tokens, index, state):  # decoding.decode counts from bos.
      return step_at(tokens, index + offset, state)

    return decoding.decode(step_fn, state, config, bos_id=self.bos_id, eos_id=self.eos_id,
                           rng=jax.random.PRNGKey(config.seed), max_len=length, vocab_size=self.vocab_size)

  def predict_fns(self) -> dict[str, Callable]:
    """`generate(params, batch)`: the target's length in tokens, decoded from the inputs."""
    def generate(params, batch):
      length = self.decode_config.max_len or batch[self.target].shape[1]
      return self.generate(params, batch, length)
    return {"generate": generate}


def _auxiliary(config: ml_collections.ConfigDict | None, input_fields: tuple[str, ...]) -> dict | None:
  """config.task.auxiliary checked → {"target", "without", "weight"}, or None when absent."""
  if not config:
    return None
  without = (config.get("without") or ())
  without = (without,) if isinstance(without, str) else tuple(without)
  unknown = sorted(set(without) - set(input_fields))
  if not config.get("target") or unknown or not config.get("weight", 0) > 0:
    raise errors.ConfigError(
        f"config.task.auxiliary={dict(config)} needs a `target` field, a `weight` > 0 and `without` naming input "
        f"fields among {list(input_fields)}" + (f" (not {unknown})" if unknown else "") + ".")
  return {"target": config.target, "without": without, "weight": float(config.weight)}
