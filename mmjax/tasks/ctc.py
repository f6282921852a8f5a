"""Connectionist temporal classification (Graves et al. 2006): the loss, and greedy and prefix-beam decoding.

A CTC model scores every time step over the vocabulary and a blank; a transcript's probability is the sum over
every path of steps that collapses to it (repeats merged, then blanks removed). The blank is the tokenizer's
padding id, which no text contains. Decoding works on log-probabilities f32[B, T, V] and returns token ids
i32[B, max_len] as the autoregressive decoders do (ids, eos, then padding), so every text evaluator reads
either: greedy takes the best step each time (Graves 2006's best-path decoding); prefix beam search
(Hannun et al. 2014) keeps the `beam_size` likeliest prefixes, each with its probability of ending in a blank
and in a character, summed over all of its paths. Both are jit-compiled JAX, so they run where the model does.
"""
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from mmjax import decoding, errors
from mmjax.tasks.base import Task
from mmjax.tasks.inputs import ModelInputs

# Two polynomial hashes of a prefix (mod 2^32) identify it among a step's candidates: a collision needs both.
_HASH_MULTIPLIERS = (np.uint32(1_000_003), np.uint32(2_654_435_761))


def ctc_loss(logits: jax.Array, targets: jax.Array, *, blank_id: int, eos_id: int) -> tuple[jax.Array, jax.Array]:
  """(−log p(targets | logits) per example f32[B], label count per example f32[B]).

  logits: f32[B, T, V]; targets: i32[B, L], the text's ids then eos and padding (as the tokenizer writes them);
  eos and padding are not labels. Every step of the logits is used (padded audio is silence, where the model
  learns to say blank).
  """
  label_paddings = ((targets == blank_id) | (targets == eos_id)).astype(jnp.float32)
  logit_paddings = jnp.zeros(logits.shape[:2], jnp.float32)
  nll = optax.ctc_loss(logits.astype(jnp.float32), logit_paddings, targets, label_paddings, blank_id=blank_id)
  return nll, (1.0 - label_paddings).sum(axis=1)


def greedy_decode(log_probs: jax.Array, *, max_len: int, blank_id: int, eos_id: int) -> jax.Array:
  """Best path: the likeliest id of every step, repeats merged and blanks removed → i32[B, max_len] (ids, eos,
  padding; at most max_len − 1 ids)."""
  path = jnp.argmax(log_probs, axis=-1).astype(jnp.int32)
  previous = jnp.concatenate([jnp.full_like(path[:, :1], blank_id), path[:, :-1]], axis=1)
  keep = (path != blank_id) & (path != previous)
  position = jnp.cumsum(keep, axis=1) - 1
  position = jnp.where(keep & (position < max_len - 1), position, max_len)  # Out of range: dropped.
  rows = jnp.arange(path.shape[0])[:, None]
  tokens = jnp.zeros((path.shape[0], max_len), jnp.int32).at[rows, position].set(path, mode="drop")
  length = jnp.minimum(keep.sum(axis=1), max_len - 1)
  return tokens.at[jnp.arange(path.shape[0]), length].set(eos_id)


def prefix_beam_search(log_probs: jax.Array, *, beam_size: int, max_len: int, blank_id: int,
                       eos_id: int) -> tuple[jax.Array, jax.Array]:
  """The likeliest transcript by CTC prefix beam search → (i32[B, max_len] ids, eos, padding; f32[B] its
  log-probability summed over its paths).

  Each step extends every kept prefix by every id (blank: the prefix stays, ending in a blank; its own last id:
  it stays, or, after a blank, grows a repeat) and keeps the `beam_size` likeliest; an extension that equals
  another kept prefix adds its probability to it. With a beam as large as the number of distinct prefixes the
  search is exact (tests compare it with summing every path).
  """
  vocab = log_probs.shape[-1]
  chars = max_len - 1  # Room for eos.
  ids = jnp.arange(vocab, dtype=jnp.int32)

  def step(state, frame):
    prefix, length, last, hashes, blank_logp, char_logp = state
    total = jnp.logaddexp(blank_logp, char_logp)
    alive = jnp.isfinite(total)
    # The prefix as it is: ending in a blank now, or in its last id again (a repeat merges).
    stay_blank = total + frame[blank_id]
    stay_char = jnp.where(length > 0, char_logp + frame[jnp.maximum(last, 0)], -jnp.inf)
    # The prefix grown by id c: a repeat of its last id only across a blank.
    grow = jnp.where(ids[None] == last[:, None], blank_logp[:, None], total[:, None]) + frame[None]
    grow = jnp.where((ids[None] != blank_id) & (length[:, None] < chars), grow, -jnp.inf)
    grown_hashes = [h[:, None] * m + (ids[None] + 1).astype(jnp.uint32) for h, m in zip(hashes, _HASH_MULTIPLIERS)]
    # grown (i, c) == kept prefix j: its probability joins j's, and it is no candidate of its own.
    same = (length[None, None, :] == length[:, None, None] + 1) & alive[None, None, :]
    for grown, h in zip(grown_hashes, hashes):
      same &= grown[:, :, None] == h[None, None, :]
    stay_char = jnp.logaddexp(stay_char, jax.nn.logsumexp(jnp.where(same, grow[:, :, None], -jnp.inf), axis=(0, 1)))
    grow = jnp.where(same.any(-1), -jnp.inf, grow)
    # Candidates [K, 1 + V]: column 0 the prefix as it is, column 1 + c grown by c.
    candidate_blank = jnp.concatenate([stay_blank[:, None], jnp.full_like(grow, -jnp.inf)], axis=1).ravel()
    candidate_char = jnp.concatenate([stay_char[:, None], grow], axis=1).ravel()
    _, best = jax.lax.top_k(jnp.logaddexp(candidate_blank, candidate_char), beam_size)
    parent, column = best // (vocab + 1), best % (vocab + 1)
    grown = column > 0
    token = column - 1
    position = jnp.where(grown, length[parent], chars)  # Out of range when not grown: dropped.
    prefix = prefix[parent].at[jnp.arange(beam_size), position].set(token, mode="drop")
    hashes = tuple(jnp.where(grown, g[parent, jnp.maximum(token, 0)], h[parent])
                   for g, h in zip(grown_hashes, hashes))
    return (prefix, length[parent] + grown, jnp.where(grown, token, last[parent]), hashes, candidate_blank[best],
            candidate_char[best]), None

  def search(frames: jax.Array) -> tuple[jax.Array, jax.Array]:
    hashes = tuple(jnp.zeros(beam_size, jnp.uint32) for _ in _HASH_MULTIPLIERS)
    start = (jnp.zeros((beam_size, chars), jnp.int32), jnp.zeros(beam_size, jnp.int32),
             jnp.full(beam_size, -1, jnp.int32), hashes, jnp.full(beam_size, -jnp.inf).at[0].set(0.0),
             jnp.full(beam_size, -jnp.inf))
    (prefix, length, _, _, blank_logp, char_logp), _ = jax.lax.scan(step, start, frames.astype(jnp.float32))
    total = jnp.logaddexp(blank_logp, char_logp)
    best = jnp.argmax(total)
    tokens = jnp.concatenate([prefix[best], jnp.zeros(1, jnp.int32)]).at[length[best]].set(eos_id)
    return tokens, total[best]

  return jax.vmap(search)(log_probs)


class CtcTask(Task):
  """Trains a CTC model (mmjax.models.CtcRecognizer) to transcribe the batch field `config.task.target` from
  the fields `config.task.inputs` feeds it, and decodes with `config.decode` (method greedy or beam, with
  beam_size): its `generate` predict function returns ids as GenerationTask's does.

  The loss is the summed −log-likelihood over the batch divided by its number of target characters (every
  character counts the same, as in the decoder's token cross-entropy). Decoding never emits an id beyond the
  tokenizer's `vocab_size` nor bos or eos.
  """

  def __init__(self, task_config: ml_collections.ConfigDict, model: nn.Module, *,
               decode_config: ml_collections.ConfigDict, blank_id: int, bos_id: int, eos_id: int, vocab_size: int):
    decoding.check_decode_config(decode_config)
    if decode_config.method not in ("greedy", "beam"):
      raise errors.ConfigError(f"config.decode.method={decode_config.method!r}: a CTC model decodes by 'greedy' "
                               "(best path) or 'beam' (prefix beam search).")
    self.model = model
    self.inputs = ModelInputs(task_config.inputs, model)
    self.target = task_config.target
    self.batch_keys = (*self.inputs.fields, self.target)
    self.decode_config = decode_config
    self.blank_id, self.bos_id, self.eos_id, self.vocab_size = blank_id, bos_id, eos_id, vocab_size

  def init(self, rng: jax.Array, batch: dict[str, jax.Array]):
    (logits, _), variables = self.model.init_with_output(rng, self.inputs(batch))
    length = batch[self.target].shape[1]
    if logits.shape[1] < length:
      raise errors.ConfigError(
          f"The audio encoder gives {logits.shape[1]} time steps, fewer than the {length} of a transcript "
          f"(config.data.text_len): CTC needs one step per character at least. Give the encoder a finer time "
          "resolution (a smaller patch_time, hop_ms or stem_stride).")
    return variables

  def _log_probs(self, params, batch: dict[str, jax.Array]) -> jax.Array:
    logits, _ = self.model.apply({"params": params}, self.inputs(batch))
    return jax.nn.log_softmax(logits)

  def loss_fn(self, params, batch: dict[str, jax.Array], rng: jax.Array) -> tuple[jax.Array, dict]:
    del rng  # The model is deterministic (no dropout).
    logits, _ = self.model.apply({"params": params}, self.inputs(batch))
    nll, labels = ctc_loss(logits, batch[self.target], blank_id=self.blank_id, eos_id=self.eos_id)
    loss = nll.sum() / jnp.maximum(labels.sum(), 1.0)
    return loss, {"loss": loss, "nll_per_utterance": nll.mean()}

  def loss_weight(self, batch: dict[str, jax.Array]) -> jax.Array:
    """The number of target characters the loss averages, to weigh micro-batches (mmjax.tasks.accumulation)."""
    targets = batch[self.target]
    return jnp.maximum(((targets != self.blank_id) & (targets != self.eos_id)).sum(), 1).astype(jnp.float32)

  def generate(self, params, batch: dict[str, jax.Array], length: int) -> jax.Array:
    """Transcripts of `length` ids (eos included) per example, by `config.decode.method`."""
    log_probs = self._log_probs(params, batch)
    emitted = jnp.arange(log_probs.shape[-1]) < self.vocab_size
    emitted &= (jnp.arange(log_probs.shape[-1]) != self.bos_id) & (jnp.arange(log_probs.shape[-1]) != self.eos_id)
    log_probs = jnp.where(emitted, log_probs, -jnp.inf)
    config = self.decode_config
    if config.method == "beam":
      return prefix_beam_search(log_probs, beam_size=config.beam_size, max_len=length, blank_id=self.blank_id,
                                eos_id=self.eos_id)[0]
    return greedy_decode(log_probs, max_len=length, blank_id=self.blank_id, eos_id=self.eos_id)

  def predict_fns(self) -> dict[str, Callable]:
    """`generate(params, batch)`: the target's length in ids, decoded from the inputs."""
    def generate(params, batch):
      return self.generate(params, batch, self.decode_config.max_len or batch[self.target].shape[1])
    return {"generate": generate}
