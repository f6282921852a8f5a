"""Greedy, sampling and beam-search decoding on toy step functions: agreement with plain Python
references and hand-computed log-probs, padding after eos, early exit, sampling frequencies,
whole-loop jit, and config errors."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from mmjax import decoding, errors

V, MAX_LEN, BOS, EOS = 8, 10, 0, 1  # Token 0 is both bos and padding; the toy model never emits it.


def decode_config(**overrides) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict(dict(
      method="greedy", max_len=MAX_LEN, beam_size=4, length_penalty=0.6, temperature=1.0, top_k=0))
  config.update(overrides)
  return config


def toy_model(seed: int, n: int):
  """A step_fn with random logits per (input token, index) plus a bias picked by the running sum of
  the tokens fed so far, which lives in the cache (f32[N] leaf `sum`), and its initial cache.

  The bias makes the logits depend on the whole prefix, so a beam whose cache row does not follow
  it gets different log-probs.
  """
  table_key, bias_key, cache_key = jax.random.split(jax.random.key(seed), 3)
  table = 2 * jax.random.normal(table_key, (V, MAX_LEN, V)).at[:, :, BOS].set(-1e9)
  bias = 2 * jax.random.normal(bias_key, (V, V))

  def step_fn(tokens, index, cache):
    total = cache["sum"] + tokens
    return table[tokens, index] + bias[total % V], {"sum": total}

  return step_fn, {"sum": jax.random.randint(cache_key, (n,), 0, V)}


def table_model(probs: dict[int, list[float]], n: int = 1):
  """A step_fn whose next-token probabilities depend only on the input token: probs[token] (uniform
  for tokens not in probs, which the test never feeds), and a dummy cache f32[n]."""
  vocab = len(next(iter(probs.values())))
  log_table = jnp.log(jnp.array([probs.get(t, [1 / vocab] * vocab) for t in range(vocab)]))
  return (lambda tokens, index, cache: (log_table[tokens], cache)), jnp.zeros((n,))


def reference_greedy(step_fn, cache, n: int) -> np.ndarray:
  """Argmax per step in a Python loop; pads (and feeds 0) after eos."""
  tokens, finished, out = jnp.full((n,), BOS), np.zeros(n, bool), []
  for index in range(MAX_LEN):
    logits, cache = step_fn(tokens, jnp.int32(index), cache)
    tokens = np.where(finished, 0, np.argmax(logits, axis=-1))
    finished |= tokens == EOS
    out.append(tokens)
  return np.stack(out, axis=1)


def sequence_logprob(step_fn, cache, tokens: np.ndarray, eos_id: int | None) -> tuple[np.ndarray, np.ndarray]:
  """Sum of log p of tokens[M, L] up to and including the first eos, and that length."""
  is_eos = tokens == eos_id
  counted = np.cumsum(is_eos, axis=1) - is_eos == 0
  inputs = np.concatenate([np.full((len(tokens), 1), BOS), tokens[:, :-1]], axis=1)
  total = np.zeros(len(tokens))
  for index in range(tokens.shape[1]):
    logits, cache = step_fn(jnp.asarray(inputs[:, index]), jnp.int32(index), cache)
    logp = np.asarray(jax.nn.log_softmax(logits))[np.arange(len(tokens)), tokens[:, index]]
    total += np.where(counted[:, index], logp, 0.0)
  return total, counted.sum(axis=1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_greedy_matches_reference_beam_of_one_and_top_1(seed):
  step_fn, cache = toy_model(seed, n=6)
  greedy = np.asarray(decoding.sample(step_fn, cache, max_len=MAX_LEN, bos_id=BOS, eos_id=EOS))
  np.testing.assert_array_equal(greedy, reference_greedy(step_fn, cache, n=6))
  beam, _ = decoding.beam_search(step_fn, cache, beam_size=1, max_len=MAX_LEN, bos_id=BOS, eos_id=EOS,
                                 length_penalty=0.0)
  np.testing.assert_array_equal(beam[:, 0], greedy)
  top_1 = decoding.sample(step_fn, cache, max_len=MAX_LEN, bos_id=BOS, eos_id=EOS,
                          rng=jax.random.key(seed), temperature=1.0, top_k=1)
  np.testing.assert_array_equal(top_1, greedy)


def test_padding_after_eos_and_no_early_stop_without_eos():
  step_fn, cache = toy_model(0, n=16)
  tokens = np.asarray(decoding.sample(step_fn, cache, max_len=MAX_LEN, bos_id=BOS, eos_id=EOS))
  first_eos = np.where((tokens == EOS).any(axis=1), (tokens == EOS).argmax(axis=1), MAX_LEN)
  assert (first_eos < MAX_LEN - 1).any()  # Some sequence ends early, so there is padding to check.
  after_eos = np.arange(MAX_LEN) > first_eos[:, None]
  assert (tokens[after_eos] == 0).all() and (tokens[~after_eos] != 0).all()
  endless = decoding.sample(step_fn, cache, max_len=MAX_LEN, bos_id=BOS, eos_id=None)
  assert endless.shape == (16, MAX_LEN) and (endless != 0).all()


def test_loops_exit_once_every_sequence_has_finished():
  # eos has probability 0.97 whatever the input; the other tokens 0.01 each.
  probs = {t: [0.0, 0.97, 0.01, 0.01, 0.01] for t in range(5)}
  step_fn, cache = table_model(probs, n=3)
  steps = []

  def counted_step_fn(tokens, index, cache):
    jax.debug.callback(lambda: steps.append(1))
    return step_fn(tokens, index, cache)

  tokens = decoding.sample(counted_step_fn, cache, max_len=MAX_LEN, bos_id=BOS, eos_id=EOS)
  jax.effects_barrier()
  assert (tokens[:, 0] == EOS).all() and len(steps) == 1
  steps.clear()
  # Beam 2: step 0 finishes [eos] and keeps 2 alive beams with p 0.01; step 1 finishes one of them
  # ([x, eos], p 0.0097) and no alive beam (p 1e-4) can beat it.
  tokens, scores = decoding.beam_search(counted_step_fn, cache, beam_size=2, max_len=MAX_LEN, bos_id=BOS,
                                        eos_id=EOS, length_penalty=0.0)
  jax.effects_barrier()
  assert len(steps) == 2
  np.testing.assert_allclose(scores[0], [np.log(0.97), np.log(0.01 * 0.97)], rtol=1e-5)


def test_beam_finds_the_sequence_greedy_misses():
  bos, eos, a, b, c = 0, 1, 2, 3, 4
  probs = {
      bos: [0.005, 0.005, 0.58, 0.40, 0.01],
      a: [0.01, 0.30, 0.15, 0.20, 0.34],  # Every continuation of a is ≤ 0.35.
      b: [0.025, 0.90, 0.025, 0.025, 0.025],
      c: [0.01, 0.96, 0.01, 0.01, 0.01],
  }
  step_fn, cache = table_model(probs)
  greedy = decoding.sample(step_fn, cache, max_len=4, bos_id=bos, eos_id=eos)
  np.testing.assert_array_equal(greedy[0], [a, c, eos, 0])
  tokens, scores = decoding.beam_search(step_fn, cache, beam_size=2, max_len=4, bos_id=bos, eos_id=eos,
                                        length_penalty=0.0)
  np.testing.assert_array_equal(tokens[0, 0], [b, eos, 0, 0])
  greedy_logp = np.log(0.58) + np.log(0.34) + np.log(0.96)
  np.testing.assert_allclose(scores[0, 0], np.log(0.40) + np.log(0.90), rtol=1e-5)
  assert scores[0, 0] > greedy_logp
  np.testing.assert_array_equal(tokens[0, 1], greedy[0])  # The runner-up is the greedy sequence.
  np.testing.assert_allclose(scores[0, 1], greedy_logp, rtol=1e-5)


@pytest.mark.parametrize("eos_id", [EOS, None])
@pytest.mark.parametrize("length_penalty", [0.0, 0.6])
def test_beam_scores_sorted_and_equal_to_recomputed_logprob(eos_id, length_penalty):
  n, k = 4, 4
  step_fn, cache = toy_model(3, n=n)
  tokens, scores = decoding.beam_search(step_fn, cache, beam_size=k, max_len=MAX_LEN, bos_id=BOS,
                                        eos_id=eos_id, length_penalty=length_penalty)
  tokens, scores = np.asarray(tokens), np.asarray(scores)
  assert tokens.shape == (n, k, MAX_LEN) and scores.shape == (n, k)
  assert np.isfinite(scores).all()  # Every example filled its K slots.
  assert (np.diff(scores, axis=1) <= 0).all()
  assert all(len({tuple(t) for t in hypotheses}) == k for hypotheses in tokens)  # Distinct per example.
  logp, length = sequence_logprob(step_fn, jax.tree.map(lambda x: jnp.repeat(x, k, axis=0), cache),
                                  tokens.reshape(n * k, MAX_LEN), eos_id)
  expected = logp / ((5 + length) / 6) ** length_penalty
  np.testing.assert_allclose(scores.reshape(n * k), expected, rtol=1e-5)
  if eos_id is not None:
    assert (length < MAX_LEN).any()  # Some hypotheses ended early, so the lengths were tested.


@pytest.mark.parametrize("method", decoding.METHODS)
def test_decode_jits_the_whole_loop(method):
  step_fn, cache = toy_model(0, n=4)
  traces = 0

  def counted_step_fn(tokens, index, cache):
    nonlocal traces
    traces += 1
    return step_fn(tokens, index, cache)

  config = decode_config(method=method)
  jitted = jax.jit(lambda cache, rng: decoding.decode(counted_step_fn, cache, config, bos_id=BOS,
                                                      eos_id=EOS, rng=rng))
  tokens = jitted(cache, jax.random.key(0))
  assert tokens.shape == (4, MAX_LEN) and tokens.dtype == jnp.int32
  assert 1 <= traces <= 2
  np.testing.assert_array_equal(
      tokens, decoding.decode(step_fn, cache, config, bos_id=BOS, eos_id=EOS, rng=jax.random.key(0)))


def test_sampling_frequencies_follow_temperature_and_top_k():
  n, temperature = 20000, 0.7
  logits = jnp.array([2.0, 1.0, 0.0, -1.0, 0.5])
  step_fn = lambda tokens, index, cache: (jnp.broadcast_to(logits, (n, 5)), cache)

  def frequencies(**kwargs) -> np.ndarray:
    tokens = decoding.sample(step_fn, jnp.zeros((n,)), max_len=1, bos_id=BOS, eos_id=None,
                             rng=jax.random.key(0), temperature=temperature, **kwargs)
    return np.bincount(np.asarray(tokens[:, 0]), minlength=5) / n

  def tolerance(p: np.ndarray) -> np.ndarray:
    # 5 standard errors of a frequency over n independent draws (≤ 0.018): a correct sampler
    # fails with probability < 1e-5 per token; a wrong temperature (below) moves them far more.
    return 5 * np.sqrt(p * (1 - p) / n)

  expected = np.asarray(jax.nn.softmax(logits / temperature))
  assert (np.abs(np.asarray(jax.nn.softmax(logits)) - expected) > tolerance(expected)).any()
  np.testing.assert_array_less(np.abs(frequencies() - expected), tolerance(expected) + 1e-12)

  top_2 = np.zeros(5)
  top_2[:2] = np.asarray(jax.nn.softmax(logits[:2] / temperature))  # Tokens 0 and 1 have the top logits.
  observed = frequencies(top_k=2)
  assert (observed[2:] == 0).all()
  np.testing.assert_array_less(np.abs(observed - top_2), tolerance(top_2) + 1e-12)


@pytest.mark.parametrize("overrides,message", [
    ({"method": "nucleus"},
     r"Unknown decode method 'nucleus' \(config.decode.method\); known: \['greedy', 'beam', 'sample'\]"),
    ({"beam_size": 0}, r"decode_config.beam_size must be ≥ 1; got 0"),
    ({"temperature": -0.5}, r"decode_config.temperature must be ≥ 0 \(0: greedy\); got -0.5"),
    ({"top_k": -1}, r"decode_config.top_k must be ≥ 0 .*; got -1"),
    ({"max_len": -1, "length_penalty": -1.0}, r"max_len must be ≥ 0 .*; got -1; .*length_penalty must be ≥ 0"),
])
def test_bad_decode_configs(overrides, message):
  config = decode_config(**overrides)
  with pytest.raises(errors.ConfigError, match=message):
    decoding.check_decode_config(config)
  step_fn, cache = toy_model(0, n=2)
  with pytest.raises(errors.ConfigError, match=message):
    decoding.decode(step_fn, cache, config, bos_id=BOS, eos_id=EOS)
  decoding.check_decode_config(decode_config())  # The defaults are fine.


def test_decode_length_from_the_caller_when_config_max_len_is_0():
  step_fn, cache = toy_model(0, n=2)
  config = decode_config(max_len=0)
  assert decoding.decode(step_fn, cache, config, bos_id=BOS, eos_id=EOS, max_len=3).shape == (2, 3)
  with pytest.raises(ValueError, match=r"pass decode\(\.\.\., max_len=\.\.\.\)"):
    decoding.decode(step_fn, cache, config, bos_id=BOS, eos_id=EOS)


@pytest.mark.parametrize("method", ["greedy", "beam", "sample"])
def test_no_method_picks_an_id_beyond_the_vocabulary(method):
  """A model whose output layer is wider than the tokenizer (ids 6 and 7 here have no token) and prefers
  exactly those ids: `vocab_size` keeps every method to ids the tokenizer can decode."""
  step_fn, cache = toy_model(3, 5)
  favour_extra = lambda tokens, index, cache: (lambda logits, c: (logits.at[:, 6:].add(100.0), c))(
      *step_fn(tokens, index, cache))
  config = decode_config(method=method)
  unmasked = decoding.decode(favour_extra, cache, config, bos_id=BOS, eos_id=EOS, rng=jax.random.key(0))
  assert (np.asarray(unmasked) >= 6).any(), "the toy model does pick the extra ids"
  tokens = decoding.decode(favour_extra, cache, config, bos_id=BOS, eos_id=EOS, rng=jax.random.key(0),
                           vocab_size=6)
  assert np.asarray(tokens).max() < 6 and (np.asarray(tokens)[:, 0] > 0).all()
