"""Autoregressive decoding for any model that exposes one step: greedy, sampling and beam search.

The model side is a `StepFn`: `step_fn(tokens, index, cache) -> (logits, cache)` reads the tokens
i32[N] at position `index` (bos at 0) and returns the logits f[N, V] of the tokens that follow, so
output token t is fed back as the input at index t + 1. The cache is any non-empty pytree whose
leaves all have leading dimension N, the number of sequences (it is where N is read from); a
step_fn must keep its leaves' shapes. Each method is a single `jax.lax.while_loop` that stops
once every sequence has finished, so jitting `decode` compiles the whole loop, tracing step_fn
once, whatever max_len. Positions after a sequence's eos hold 0 (padding).
"""
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from mmjax import errors

Cache = Any
StepFn = Callable[[jax.Array, jax.Array, Cache], tuple[jax.Array, Cache]]

METHODS = ("greedy", "beam", "sample")


def check_decode_config(decode_config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError naming the unknown method or every out-of-range value of `decode_config`."""
  c = decode_config
  errors.check_choice(c.method, METHODS, "decode method", "config.decode.method")
  problems = [f"{name} must be {rule}; got {value!r}" for name, value, ok, rule in (
      ("max_len", c.max_len, c.max_len >= 0, "≥ 0 (0: the caller's length)"),
      ("beam_size", c.beam_size, c.beam_size >= 1, "≥ 1"),
      ("length_penalty", c.length_penalty, c.length_penalty >= 0, "≥ 0 (0: no length normalisation)"),
      ("temperature", c.temperature, c.temperature >= 0, "≥ 0 (0: greedy)"),
      ("top_k", c.top_k, c.top_k >= 0, "≥ 0 (0: the whole vocabulary)"),
  ) if not ok]
  if problems:
    raise errors.ConfigError("; ".join(f"decode_config.{p}" for p in problems) + ".")


def _num_sequences(cache: Cache) -> int:
  leaves = jax.tree.leaves(cache)
  if not leaves:
    raise ValueError("The decoding cache has no leaves, so the number of sequences is unknown: give "
                     "it at least one array with leading dimension N (e.g. a dummy zeros(N)).")
  return leaves[0].shape[0]


def sample(step_fn: StepFn, cache: Cache, *, max_len: int, bos_id: int, eos_id: int | None,
           rng: jax.Array | None = None, temperature: float = 0.0, top_k: int = 0) -> jax.Array:
  """Greedy decoding (temperature 0) or sampling from softmax(logits / temperature).

  top_k > 0 samples among the tokens whose logit is at least the k-th largest. temperature and
  top_k are Python numbers (static under jit); rng is needed only when temperature > 0. eos_id
  None never stops early: every sequence gets exactly max_len tokens.
  Returns the output tokens i32[N, max_len].
  """
  if temperature > 0 and rng is None:
    raise ValueError("Sampling with temperature > 0 needs an rng.")
  n = _num_sequences(cache)

  def pick(logits: jax.Array, index: jax.Array) -> jax.Array:
    if temperature == 0:
      return jnp.argmax(logits, axis=-1)
    logits = logits.astype(jnp.float32)
    if top_k:
      kth_largest = jax.lax.top_k(logits, min(top_k, logits.shape[-1]))[0][:, -1:]
      logits = jnp.where(logits < kth_largest, -jnp.inf, logits)
    return jax.random.categorical(jax.random.fold_in(rng, index), logits / temperature)

  def not_done(state) -> jax.Array:
    index, _, _, finished, _ = state
    return (index < max_len) & ~finished.all()

  def step(state):
    index, tokens, out, finished, cache = state
    logits, cache = step_fn(tokens, index, cache)
    tokens = jnp.where(finished, 0, pick(logits, index)).astype(jnp.int32)
    if eos_id is not None:
      finished |= tokens == eos_id
    return index + 1, tokens, out.at[:, index].set(tokens), finished, cache

  init = (jnp.int32(0), jnp.full((n,), bos_id, jnp.int32), jnp.zeros((n, max_len), jnp.int32),
          jnp.zeros((n,), bool), cache)
  return jax.lax.while_loop(not_done, step, init)[2]


def beam_search(step_fn: StepFn, cache: Cache, *, beam_size: int, max_len: int, bos_id: int,
                eos_id: int | None, length_penalty: float = 0.6) -> tuple[jax.Array, jax.Array]:
  """The beam_size most likely sequences of each of the N inputs, by length-normalised log-prob.

  A hypothesis scores sum log p / ((5 + length) / 6) ** length_penalty (GNMT; the length counts
  the eos), in float32. Each example keeps K = beam_size alive (unfinished) and K finished
  hypotheses. Every step ranks the alive beams' continuations and keeps the 2K best: at most K of
  them end in eos, so K alive ones always remain. A candidate ending in eos joins the finished
  set only if it ranks among the K best, i.e. where it would have been kept; this makes
  beam_size 1 with length_penalty 0 exactly greedy. The loop stops at max_len or once, for every
  example, no alive beam can beat its worst finished hypothesis (with length_penalty ≥ 0 an alive
  beam's score can at best reach its log-prob / the max_len penalty). An example with no finished
  hypothesis returns its alive beams, scored with the max_len penalty; finished-set slots that
  stay empty have score -inf and tokens 0.

  The cache is tiled to N * K rows (row n * K + k is beam k of example n) and every step its rows
  follow their beams' parents, so per-sequence state stays with its hypothesis.
  Returns tokens i32[N, K, max_len] and scores f32[N, K], best first.
  """
  n, k = _num_sequences(cache), beam_size
  rows = jnp.arange(n)[:, None]

  def penalty(length) -> jax.Array:
    return ((5.0 + length) / 6.0) ** length_penalty

  def not_done(state) -> jax.Array:
    index, _, alive_logp, _, finished_score, _ = state
    best_alive = alive_logp[:, 0] / penalty(max_len)
    return (index < max_len) & ~(finished_score[:, -1] >= best_alive).all()

  # Sequences are i32[N, K, 1 + max_len]: bos, then the output tokens.
  def step(state):
    index, alive_seq, alive_logp, finished_seq, finished_score, cache = state
    logits, cache = step_fn(alive_seq[:, :, index].reshape(n * k), index, cache)
    vocab = logits.shape[-1]
    logp = jax.nn.log_softmax(logits.astype(jnp.float32)).reshape(n, k, vocab)
    candidate_logp, flat = jax.lax.top_k((alive_logp[:, :, None] + logp).reshape(n, k * vocab), 2 * k)
    parent, token = flat // vocab, flat % vocab
    candidate_seq = alive_seq[rows, parent].at[:, :, index + 1].set(token)
    ends = (token == eos_id) if eos_id is not None else jnp.zeros(token.shape, bool)

    alive_logp, alive = jax.lax.top_k(jnp.where(ends, -jnp.inf, candidate_logp), k)
    cache_rows = (rows * k + parent[rows, alive]).reshape(n * k)
    cache = jax.tree.map(lambda leaf: leaf[cache_rows], cache)

    new_score = jnp.where(ends & (jnp.arange(2 * k) < k), candidate_logp / penalty(index + 1), -jnp.inf)
    finished_score, best = jax.lax.top_k(jnp.concatenate([finished_score, new_score], axis=1), k)
    finished_seq = jnp.concatenate([finished_seq, candidate_seq], axis=1)[rows, best]
    return index + 1, candidate_seq[rows, alive], alive_logp, finished_seq, finished_score, cache

  seq = jnp.zeros((n, k, 1 + max_len), jnp.int32).at[:, :, 0].set(bos_id)
  alive_logp = jnp.full((n, k), -jnp.inf).at[:, 0].set(0.0)  # One live beam, not K copies of it.
  tiled_cache = jax.tree.map(lambda leaf: jnp.repeat(leaf, k, axis=0), cache)
  init = (jnp.int32(0), seq, alive_logp, seq, jnp.full((n, k), -jnp.inf), tiled_cache)
  _, alive_seq, alive_logp, finished_seq, finished_score, _ = jax.lax.while_loop(not_done, step, init)

  none_finished = jnp.isneginf(finished_score[:, 0])
  tokens = jnp.where(none_finished[:, None, None], alive_seq, finished_seq)[:, :, 1:]
  scores = jnp.where(none_finished[:, None], alive_logp / penalty(max_len), finished_score)
  return tokens, scores


def within_vocabulary(step_fn: StepFn, vocab_size: int) -> StepFn:
  """`step_fn` whose logits beyond the first `vocab_size` ids are -inf, so no method ever picks an id that no
  token has (a model's output layer may be wider than its tokenizer's vocabulary)."""
  def masked(tokens, index, cache):
    logits, cache = step_fn(tokens, index, cache)
    if logits.shape[-1] <= vocab_size:
      return logits, cache
    return jnp.where(jnp.arange(logits.shape[-1]) < vocab_size, logits, -jnp.inf), cache
  return masked


def decode(step_fn: StepFn, cache: Cache, decode_config: ml_collections.ConfigDict, *, bos_id: int,
           eos_id: int | None, rng: jax.Array | None = None, max_len: int | None = None,
           vocab_size: int | None = None) -> jax.Array:
  """Output tokens i32[N, max_len] by `decode_config.method` (beam: the best beam).

  decode_config has fields method (one of METHODS), max_len, beam_size, length_penalty (beam),
  temperature and top_k (sample; rng is needed when temperature > 0). A decode_config.max_len of
  0 leaves the length to the caller, which passes it as `max_len` (e.g. the target's length).
  `vocab_size` (the tokenizer's) keeps every method to ids below it.
  """
  check_decode_config(decode_config)
  c = decode_config
  if vocab_size is not None:
    step_fn = within_vocabulary(step_fn, vocab_size)
  max_len = max_len or c.max_len
  if max_len < 1:
    raise ValueError("decode_config.max_len=0 leaves the length to the caller: pass decode(..., max_len=...).")
  if c.method == "beam":
    tokens, _ = beam_search(step_fn, cache, beam_size=c.beam_size, max_len=max_len, bos_id=bos_id,
                            eos_id=eos_id, length_penalty=c.length_penalty)
    return tokens[:, 0]
  temperature = c.temperature if c.method == "sample" else 0.0
  return sample(step_fn, cache, max_len=max_len, bos_id=bos_id, eos_id=eos_id, rng=rng,
                temperature=temperature, top_k=c.top_k)
