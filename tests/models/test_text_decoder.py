"""The text decoder: KV-cached steps equal the teacher-forced pass."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmjax.models import TextDecoder

DECODER = dict(vocab_size=24, width=32, depth=2, num_heads=4, mlp_dim=64, max_len=10)


def _decoder_inputs(batch=3, length=7, encoded_len=5):
  rng = np.random.default_rng(0)
  tokens = jnp.asarray(rng.integers(1, DECODER["vocab_size"], size=(batch, length)), jnp.int32)
  encoded = jnp.asarray(rng.normal(size=(batch, encoded_len, DECODER["width"])), jnp.float32)
  mask = jnp.asarray(np.arange(encoded_len)[None, :] < np.array([[5], [3], [1]]))
  return tokens, encoded, mask


@pytest.mark.parametrize("tie_embedding", [True, False])
@pytest.mark.parametrize("kv_cache", [True, False])
def test_steps_equal_teacher_forcing(tie_embedding, kv_cache):
  """Position by position, the cached (and the full-recompute) step gives the logits of the
  one teacher-forced pass over the whole sequence."""
  decoder = TextDecoder(**DECODER, tie_embedding=tie_embedding)
  tokens, encoded, mask = _decoder_inputs()
  params = jax.jit(decoder.init)(jax.random.PRNGKey(0), tokens, encoded, mask)
  full = jax.jit(decoder.apply)(params, tokens, encoded, mask)
  init = decoder.init_cache if kv_cache else decoder.init_buffer
  state = jax.jit(lambda p, e, m: decoder.apply(p, e, m, DECODER["max_len"], method=init))(params, encoded, mask)
  step = jax.jit(lambda tokens, index, state: decoder.apply(
      params, tokens, index, state, method=decoder.step if kv_cache else decoder.step_uncached))
  for index in range(tokens.shape[1]):
    logits, state = step(tokens[:, index], jnp.int32(index), state)
    np.testing.assert_allclose(logits, full[:, index], atol=1e-5, rtol=1e-5)


def test_decoder_attends_to_valid_encoded_tokens_only():
  decoder = TextDecoder(**DECODER)
  tokens, encoded, mask = _decoder_inputs()
  params = jax.jit(decoder.init)(jax.random.PRNGKey(0), tokens, encoded, mask)
  apply = jax.jit(decoder.apply)
  changed = encoded.at[2, 1:].set(100.0)  # Row 2 has one valid encoded token.
  out = apply(params, tokens, encoded, mask)
  np.testing.assert_allclose(out, apply(params, tokens, changed, mask), atol=1e-5)
  changed = encoded.at[2, 0].set(100.0)
  assert not np.allclose(out[2], apply(params, tokens, changed, mask)[2], atol=1e-3)


def test_decoder_rejects_too_long_inputs():
  decoder = TextDecoder(**DECODER)
  tokens, encoded, mask = _decoder_inputs(length=DECODER["max_len"] + 1)
  with pytest.raises(ValueError, match="exceeds the decoder's max_len=10"):
    jax.eval_shape(decoder.init, jax.random.PRNGKey(0), tokens, encoded, mask)
