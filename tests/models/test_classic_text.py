"""The classic text encoders (LSTM, 1-D CNN, bag of words): the Transformer's interface, padding that changes
nothing, and the LSTM equal to its cell unrolled by hand over each sequence's own tokens."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmjax import errors
from mmjax.models import build_encoder

TOKENS = np.array([[5, 9, 3, 0, 0, 0], [7, 2, 8, 4, 6, 3]], np.int32)  # Row 0 padded after 3 tokens.
BLOCKS = {"lstm": dict(name="lstm", vocab_size=12, width=8),
          "bilstm": dict(name="lstm", vocab_size=12, width=8, bidirectional=True, depth=2),
          "lstm_max": dict(name="lstm", vocab_size=12, width=8, pool="max"),
          "cnn": dict(name="cnn", vocab_size=12, width=6, kernel_sizes=(2, 3)),
          "bow": dict(name="bow", vocab_size=12, width=8)}


def _apply(block, tokens):
  """(params, the encoder's output on `tokens`), jitted: op by op, every op would compile on its own."""
  encoder = build_encoder("text", block)
  params = nn.unbox(jax.jit(encoder.init)(jax.random.PRNGKey(0), jnp.asarray(TOKENS)))["params"]
  return params, jax.jit(encoder.apply)({"params": params}, jnp.asarray(tokens))


@pytest.mark.parametrize("key", sorted(BLOCKS))
def test_interface_and_padding_change_nothing(key):
  params, (pooled, aux) = _apply(BLOCKS[key], TOKENS)
  width = BLOCKS[key]["width"]
  assert pooled.shape == (2, width) and aux["tokens"].shape == (2, 6, width)
  np.testing.assert_array_equal(aux["mask"], TOKENS != 0)
  assert not np.asarray(aux["tokens"])[0, 3:].any()  # Padding positions hold no features.
  # More padding, or none, gives the same valid tokens and pooled vector.
  encoder = build_encoder("text", BLOCKS[key])
  for tokens in (np.pad(TOKENS, ((0, 0), (0, 3))), TOKENS[:1, :3]):
    other_pooled, other_aux = jax.jit(encoder.apply)({"params": params}, jnp.asarray(tokens))
    rows = len(tokens)
    np.testing.assert_allclose(other_pooled, pooled[:rows], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(other_aux["tokens"][:, :3], aux["tokens"][:rows, :3], rtol=1e-5, atol=1e-6)


def _unrolled(cell_params, inputs, features):
  """The LSTM cell stepped by hand over `inputs` [T, D]: the states after each step."""
  cell = nn.OptimizedLSTMCell(features)
  carry = cell.initialize_carry(jax.random.PRNGKey(0), (1, inputs.shape[-1]))
  outputs = []
  for x in inputs:
    carry, y = cell.apply({"params": cell_params}, carry, x[None])
    outputs.append(y[0])
  return np.stack(outputs)


def test_lstm_equals_its_cell_unrolled_and_bidirectional_reads_both_ways():
  params, (pooled, aux) = _apply(BLOCKS["lstm"], TOKENS)
  embedded = np.asarray(params["embed"]["embedding"]["embedding"])[TOKENS]
  for row, length in enumerate((3, 6)):
    states = _unrolled(params["cell_0"], embedded[row, :length], 8)
    np.testing.assert_allclose(aux["tokens"][row, :length], states, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pooled[row], states[-1], rtol=1e-5, atol=1e-6)  # "last": after the last token.

  block = dict(BLOCKS["bilstm"], depth=1)
  params, (pooled, aux) = _apply(block, TOKENS)
  embedded = np.asarray(params["embed"]["embedding"]["embedding"])[TOKENS]
  forward = _unrolled(params["forward_0"], embedded[0, :3], 4)
  backward = _unrolled(params["backward_0"], embedded[0, :3][::-1], 4)[::-1]
  np.testing.assert_allclose(aux["tokens"][0, :3], np.concatenate([forward, backward], -1), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(pooled[0], np.concatenate([forward[-1], backward[0]]), rtol=1e-5, atol=1e-6)


def test_cnn_max_pools_over_time_and_bag_of_words_ignores_order():
  params, (pooled, aux) = _apply(BLOCKS["cnn"], TOKENS)
  np.testing.assert_allclose(pooled[0], np.asarray(aux["tokens"])[0, :3].max(0), rtol=1e-6)
  _, (bow, _) = _apply(BLOCKS["bow"], TOKENS)
  _, (shuffled, _) = _apply(BLOCKS["bow"], np.array([[3, 5, 9, 0, 0, 0], [6, 4, 8, 2, 7, 3]], np.int32))
  np.testing.assert_allclose(bow, shuffled, rtol=1e-6)


def test_bad_settings_are_named():
  with pytest.raises(errors.ConfigError, match="bidirectional LSTM splits width=7"):
    _apply(dict(BLOCKS["bilstm"], width=7), TOKENS)
  with pytest.raises(errors.ConfigError, match="text CNN splits width=7 over 2 kernel sizes"):
    _apply(dict(BLOCKS["cnn"], width=7), TOKENS)
  with pytest.raises(errors.InputError, match="LSTM text encoder expects int tokens"):
    _apply(BLOCKS["lstm"], TOKENS.astype(np.float32))


@pytest.mark.parametrize("text", ["lstm", "cnn", "bow"])
def test_each_baseline_is_the_question_encoder_of_the_vqa_classifier(text):
  """configs/shapes_vqa.py:text=<baseline> builds a classifier whose question tower is the baseline (shapes only:
  the encoders' own numbers are tested above; training runs as the Transformer's does)."""
  from configs import shapes_vqa
  from mmjax import models

  config = shapes_vqa.get_config(f"head=classifier,text={text},smoke")
  model = models.build(config.model, num_classes=7)
  inputs = {"image": jnp.zeros((2, 48, 48, 3)), "text": jnp.asarray(TOKENS)}
  params = nn.unbox(jax.eval_shape(model.init, jax.random.PRNGKey(0), inputs))["params"]
  assert {"embed"} <= set(params["text_encoder"]) and "encoder" not in params["text_encoder"]
  logits = jax.eval_shape(lambda p: model.apply({"params": p}, inputs)[0], params)
  assert logits.shape == (2, 7)
