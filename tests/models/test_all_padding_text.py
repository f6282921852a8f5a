"""Every text encoder on a text of padding only, as modality reliance feeds it (a zeroed question or caption): the
pooled vector and tokens stay finite and the other rows of the batch do not change. (Fusions with an entirely
masked modality: tests/models/test_fusion.py.)"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmjax import nn as mnn
from mmjax.models import build_encoder

# One block per way of masking and pooling; every pooling on an empty row is checked below.
BLOCKS = {"transformer": dict(name="transformer", vocab_size=12, width=8, depth=1, num_heads=2, mlp_dim=16,
                              max_len=6, causal=True, pool="last"),
          # Mean pooling, then normalised: the zero vector must not become 0/0.
          "bert": dict(name="bert", vocab_size=12, width=8, depth=1, num_heads=2, mlp_dim=16, max_len=6),
          # A sequence of length 0 both ways ("last": forward last ⊕ backward first).
          "bilstm": dict(name="lstm", vocab_size=12, width=8, bidirectional=True),
          "cnn_max": dict(name="cnn", vocab_size=12, width=6, kernel_sizes=(2, 3)),
          "bow": dict(name="bow", vocab_size=12, width=8)}
# Row 1 is padding only; rows 0 and 2 are real texts.
TEXT = np.array([[5, 9, 3, 0, 0, 0], [0, 0, 0, 0, 0, 0], [7, 2, 8, 4, 6, 3]], np.int32)


@pytest.mark.parametrize("key", sorted(BLOCKS))
def test_a_text_of_padding_only_is_finite_and_leaves_the_other_rows_alone(key):
  encoder = build_encoder("text", BLOCKS[key])

  @jax.jit  # One compile for both batches.
  def encode(rng):
    (pooled, aux), params = encoder.init_with_output(rng, jnp.asarray(TEXT))
    return pooled, aux, encoder.apply(nn.unbox(params), jnp.asarray(TEXT[::2]))[0]

  pooled, aux, without_blank = encode(jax.random.PRNGKey(0))
  assert np.isfinite(pooled).all() and np.isfinite(aux["tokens"]).all()
  assert not np.asarray(aux["mask"])[1].any()
  np.testing.assert_allclose(pooled[::2], without_blank, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", sorted(mnn.POOLINGS))
def test_every_pooling_of_a_row_without_valid_tokens_is_finite(kind):
  tokens = jnp.arange(2 * 3 * 4, dtype=jnp.float32).reshape(2, 3, 4)
  pooled = mnn.pool_tokens(tokens, jnp.array([[True, True, False], [False, False, False]]), kind)
  assert np.isfinite(pooled).all()
