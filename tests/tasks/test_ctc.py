"""CTC: the loss, greedy and prefix-beam decoding against sums over every path of hand-made scores."""
import functools
import itertools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import common
from mmjax import errors, models, tasks

BLANK, EOS = 0, 3


def _collapse(path) -> tuple[int, ...]:
  """A CTC path → its labels: repeats merged, then blanks removed."""
  return tuple(token for token, _ in itertools.groupby(path) if token != BLANK)


def _label_log_probs(log_probs: np.ndarray) -> dict[tuple[int, ...], float]:
  """log p(labels) of every label sequence, by summing the probability of every path: log_probs f[T, V]."""
  totals: dict[tuple[int, ...], float] = {}
  steps, vocab = log_probs.shape
  for path in itertools.product(range(vocab), repeat=steps):
    probability = np.exp(sum(log_probs[t, token] for t, token in enumerate(path)))
    totals[_collapse(path)] = totals.get(_collapse(path), 0.0) + probability
  return {labels: float(np.log(p)) for labels, p in totals.items()}


def _random_log_probs(seed: int, shape) -> np.ndarray:
  return np.asarray(jax.nn.log_softmax(2.0 * jax.random.normal(jax.random.key(seed), shape)))


def test_greedy_merges_repeats_drops_blanks_and_keeps_room_for_eos():
  path = [4, 4, BLANK, 4, 5, 5, BLANK, 6]  # a a _ a b b _ c → a a b c
  log_probs = jnp.log(jax.nn.one_hot(jnp.array([path]), 8) * 0.9 + 0.0125)
  def greedy(max_len):
    return jax.jit(functools.partial(tasks.greedy_decode, max_len=max_len, blank_id=BLANK, eos_id=EOS))(log_probs)
  np.testing.assert_array_equal(greedy(6), [[4, 4, 5, 6, EOS, 0]])
  np.testing.assert_array_equal(greedy(3), [[4, 4, EOS]])


def test_prefix_beam_search_with_a_wide_beam_is_exact():
  """With a beam as large as the number of distinct prefixes (31 of ≤ 4 ids over 2 letters), prefix beam
  search finds the likeliest transcript and its probability summed over every path."""
  vocab, steps, max_len = 4, 4, 6  # Ids: blank, two letters, and eos (its score is -inf, as the task masks it).
  log_probs = _random_log_probs(0, (4, steps, vocab)).copy()
  log_probs[..., EOS] = -np.inf
  search = jax.jit(functools.partial(tasks.prefix_beam_search, beam_size=31, max_len=max_len, blank_id=BLANK,
                                     eos_id=EOS))
  tokens, scores = search(jnp.asarray(log_probs))
  for row in range(4):
    exact = _label_log_probs(log_probs[row, :, :EOS])
    best = max(exact, key=exact.get)
    assert tuple(int(t) for t in tokens[row, :len(best)]) == best and tokens[row, len(best)] == EOS
    assert not np.asarray(tokens[row, len(best) + 1:]).any()
    np.testing.assert_allclose(scores[row], exact[best], rtol=1e-5)


def test_ctc_loss_is_minus_the_log_of_the_summed_path_probabilities():
  log_probs = _random_log_probs(1, (2, 4, 4))
  targets = jnp.array([[1, 2, EOS, 0], [2, 2, EOS, 0]])  # eos and padding are not labels.
  nll, labels = jax.jit(functools.partial(tasks.ctc_loss, blank_id=BLANK, eos_id=EOS))(jnp.asarray(log_probs), targets)
  np.testing.assert_array_equal(labels, [2, 2])
  for row, expected in enumerate([(1, 2), (2, 2)]):
    np.testing.assert_allclose(nll[row], -_label_log_probs(log_probs[row])[expected], rtol=1e-5)


def _ctc_task(method: str = "greedy") -> tasks.CtcTask:
  model = models.build(ml_collections.ConfigDict(dict(
      name="ctc", encoders={"audio": dict(name="ast", width=16, depth=1, num_heads=2, mlp_dim=32, patch_time=2,
                                          patch_freq=40, hop_ms=20.0)},
      vocab_size=8, **common.compute_settings())), sample_rate=8000)
  decode = common.decode()
  decode.method = method
  return tasks.CtcTask(ml_collections.ConfigDict(dict(inputs={"audio": "audio"}, target="text")), model,
                       decode_config=decode, blank_id=BLANK, bos_id=2, eos_id=EOS, vocab_size=7)


def test_too_few_time_steps_for_the_transcript_and_sampling_are_config_errors():
  batch = {"audio": jnp.zeros((1, 8000)), "text": jnp.zeros((1, 30), jnp.int32)}  # 1 s: 24 steps of 40 ms.
  assert jax.eval_shape(_ctc_task().init, jax.random.key(0), {**batch, "text": batch["text"][:, :24]})
  with pytest.raises(errors.ConfigError, match="gives 24 time steps, fewer than the 30 of a transcript"):
    jax.eval_shape(_ctc_task().init, jax.random.key(0), batch)
  with pytest.raises(errors.ConfigError, match="a CTC model decodes by 'greedy'"):
    _ctc_task(method="sample")
