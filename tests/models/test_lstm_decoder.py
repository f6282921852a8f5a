"""The LSTM decoder: step-by-step decoding equals teacher forcing, padding and empty encoder rows are safe, and
through a Captioner (config.model.decoder.name="lstm") the decoding methods, the task and the config run on it."""
import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import shapes_caption
from mmjax import errors, interpret, models, tasks
from mmjax.data.tokenizer import WordTokenizer
from mmjax.models import LSTMDecoder
from tests.helpers import image_caption_task

DECODER = dict(vocab_size=24, width=32, depth=2, mlp_dim=16, max_len=10)
ENCODED_LENGTHS = (5, 2, 0)  # Row 1 has padding; row 2 has no valid encoded token at all.


def _decoder_inputs(batch=3, length=7, encoded_len=5):
  rng = np.random.default_rng(0)
  tokens = jnp.asarray(rng.integers(1, DECODER["vocab_size"], size=(batch, length)), jnp.int32)
  encoded = jnp.asarray(rng.normal(size=(batch, encoded_len, DECODER["width"])), jnp.float32)
  mask = jnp.asarray(np.arange(encoded_len)[None, :] < np.array(ENCODED_LENGTHS)[:, None])
  return tokens, encoded, mask


@functools.cache
def _decoder(attention: str, tie_embedding: bool):
  """(decoder, params, its jitted teacher-forced pass), built once per setting for the tests below. The params
  are scaled up from a fresh init's, whose near-zero logits would make any comparison easy to pass."""
  decoder = LSTMDecoder(**DECODER, attention=attention, tie_embedding=tie_embedding)
  params = jax.jit(decoder.init)(jax.random.PRNGKey(0), *_decoder_inputs())
  return decoder, jax.tree.map(lambda p: 4 * p, params), jax.jit(decoder.apply)


@pytest.mark.parametrize("attention,tie_embedding", [("additive", True), ("dot", False)])
def test_steps_equal_teacher_forcing(attention, tie_embedding):
  """Position by position, the cached step (the LSTM carry) and the full recompute (no cache) give the logits of
  the one teacher-forced pass, also for the padded and the empty encoder rows."""
  decoder, params, apply = _decoder(attention, tie_embedding)
  tokens, encoded, mask = _decoder_inputs()
  full = np.asarray(apply(params, tokens, encoded, mask))
  assert full.shape == (3, 7, DECODER["vocab_size"]) and full.dtype == np.float32 and np.isfinite(full).all()
  assert np.abs(full).max() > 0.5
  for init, step in ((decoder.init_cache, decoder.step), (decoder.init_buffer, decoder.step_uncached)):
    state = decoder.apply(params, encoded, mask, DECODER["max_len"], method=init)
    assert all(leaf.shape[0] == 3 for leaf in jax.tree.leaves(state))  # Beam search re-gathers rows.
    jitted_step = jax.jit(lambda tokens, index, state, step=step: decoder.apply(params, tokens, index, state,
                                                                                 method=step))
    for index in range(tokens.shape[1]):
      logits, state = jitted_step(tokens[:, index], jnp.int32(index), state)
      np.testing.assert_allclose(logits, full[:, index], atol=1e-5, rtol=1e-5,
                                 err_msg=f"{step.__name__}, position {index}")


def test_decoder_attends_to_valid_encoded_tokens_only():
  _, params, apply = _decoder("additive", True)
  tokens, encoded, mask = _decoder_inputs()
  out = apply(params, tokens, encoded, mask)
  # Padding (row 1 past 2 tokens, all of row 2) changes nothing, through the attention or the initial state.
  np.testing.assert_allclose(out, apply(params, tokens, encoded.at[1, 2:].set(100.0).at[2].set(100.0), mask),
                             atol=1e-6)
  assert not np.allclose(out[1], apply(params, tokens, encoded.at[1, 1].set(100.0), mask)[1], atol=1e-3)


def test_decoder_rejects_too_long_inputs_and_a_bad_attention():
  tokens, encoded, mask = _decoder_inputs(length=DECODER["max_len"] + 1)
  with pytest.raises(errors.InputError, match="exceeds the decoder's max_len=10"):
    jax.eval_shape(LSTMDecoder(**DECODER).init, jax.random.PRNGKey(0), tokens, encoded, mask)
  with pytest.raises(errors.ConfigError, match=r"Unknown LSTM decoder attention 'bilinear' "
                                               r"\(config.model.decoder.attention\)"):
    jax.eval_shape(LSTMDecoder(**DECODER, attention="bilinear").init, jax.random.PRNGKey(0), tokens[:, :4],
                   encoded, mask)


TOKENIZER = WordTokenizer(["w%d" % i for i in range(20)])
MODEL = ml_collections.ConfigDict(dict(
    name="captioner", encoders=dict(image=dict(name="vit", variant="Nano/8", width=32, num_heads=2)),
    fusion="concat", width=32, fusion_depth=0, num_heads=2, mlp_dim=64,
    decoder=dict(name="lstm", vocab_size=TOKENIZER.vocab_size + 8, depth=2, mlp_dim=32, max_len=12),
    dtype="float32", param_dtype="float32", remat="none"))


def _task(method: str = "greedy", kv_cache: bool = True, model: ml_collections.ConfigDict = MODEL, **decode):
  return image_caption_task(model, TOKENIZER, method, kv_cache, **decode)


@pytest.fixture(scope="module")
def params_and_batch():
  rng = np.random.default_rng(0)
  batch = {"image": jnp.asarray(rng.uniform(-1, 1, size=(4, 16, 16, 3)), jnp.float32),
           "text": jnp.asarray(rng.integers(3, TOKENIZER.vocab_size, size=(4, 10)), jnp.int32).at[:, 7:].set(0)}
  params = jax.jit(_task().init)(jax.random.PRNGKey(0), batch)["params"]
  assert {"image_encoder", "text_decoder"} <= set(params) and "lstm" in params["text_decoder"]
  return params, batch


def test_greedy_and_beam_search_run_unchanged_on_the_lstm(params_and_batch):
  """Through the Captioner and the generation task, as configs run them: beam 1 with length_penalty 0 is greedy."""
  params, batch = params_and_batch
  params = jax.tree.map(lambda p: 4 * p, params)  # Clear argmax winners: float rounding cannot flip one.
  greedy = jax.jit(lambda p, b: _task("greedy").generate(p, b, 10))(params, batch)
  beam = jax.jit(lambda p, b: _task("beam", beam_size=1).generate(p, b, 10))(params, batch)
  assert greedy.shape == (4, 10) and (np.asarray(greedy)[:, 0] != 0).all()
  np.testing.assert_array_equal(greedy, beam)


def test_one_sgd_step_on_the_task_loss_lowers_it_and_reaches_every_weight(params_and_batch):
  params, batch = params_and_batch
  loss_and_grad = jax.jit(jax.value_and_grad(_task().loss_fn, has_aux=True))
  (loss, _), grads = loss_and_grad(params, batch, jax.random.PRNGKey(0))
  decoder_grads = jax.tree_util.tree_flatten_with_path(grads["text_decoder"])[0]
  assert all(np.isfinite(g).all() for _, g in decoder_grads)
  assert not [jax.tree_util.keystr(path) for path, g in decoder_grads if not np.abs(g).max() > 0]
  (stepped_loss, _), _ = loss_and_grad(jax.tree.map(lambda p, g: p - 0.5 * g, params, grads), batch,
                                       jax.random.PRNGKey(0))
  assert float(stepped_loss) < float(loss)


def test_caption_attention_reads_the_lstms_attention_over_the_image_patches(params_and_batch):
  """mmjax.interpret on the LSTM captioner: one layer of one head, at each generated position a distribution over
  the image's tokens (its CLS and 2 × 2 patches), the patches laid out on their grid."""
  params, batch = params_and_batch
  found = interpret.caption_attention(_task(), params, batch)
  assert found.layers.shape == (4, 1, 10, 5) and found.grid == (2, 2) and found.patches.shape == (4, 10, 2, 2)
  np.testing.assert_allclose(found.layers.sum(-1), 1.0, rtol=1e-5)
  assert found.layers.std(-1).min() > 0  # Not uniform: the scores depend on the patches.


def test_an_unknown_decoder_name_is_a_one_line_config_error(params_and_batch):
  _, batch = params_and_batch
  model = ml_collections.ConfigDict(MODEL.to_dict())
  model.decoder.name = "gru"
  with pytest.raises(errors.ConfigError) as raised:
    jax.eval_shape(_task(model=model).init, jax.random.PRNGKey(0), batch)
  assert str(raised.value) == ("Unknown decoder 'gru' (config.model.decoder.name); known: ['lstm', 'transformer'].")


def test_the_smoke_caption_config_with_the_lstm_builds_and_initialises():
  config = shapes_caption.get_config("smoke,decoder=lstm")
  model = models.build(config.model)
  assert isinstance(model, models.Captioner) and config.model.decoder.name == "lstm"
  task = tasks.build(config, model, TOKENIZER)
  batch = {"image": jax.ShapeDtypeStruct((2, 48, 48, 3), jnp.float32),
           "text": jax.ShapeDtypeStruct((2, config.data.text_len), jnp.int32)}
  params = jax.eval_shape(task.init, jax.random.PRNGKey(0), batch)["params"]
  assert set(params["text_decoder"]) == {"embed", "init_state_0", "lstm", "key", "query", "score", "combine"}
