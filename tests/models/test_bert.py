"""BertEncoder on its own (a small random one): shapes, masking, pooling, normalisation, input checks, remat.
Equality with the real all-MiniLM-L6-v2 is tests/pretrained/test_bert_import.py."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmjax import errors
from mmjax.models.encoders import BertEncoder, build_encoder

SMALL = dict(vocab_size=40, width=32, depth=2, num_heads=4, mlp_dim=64, max_len=16)
TOKENS = jnp.array([[2, 7, 9, 3, 0, 0], [2, 5, 6, 8, 11, 3]])  # [CLS] … [SEP], then [PAD]s.


@pytest.fixture(scope="module")
def params():
  return jax.jit(BertEncoder(**SMALL).init)(jax.random.PRNGKey(0), TOKENS)


def _apply(params, tokens, **fields):
  return jax.jit(BertEncoder(**SMALL, **fields).apply)(params, tokens)


def test_shapes_mask_and_unit_norm(params):
  pooled, aux = _apply(params, TOKENS)
  assert pooled.shape == (2, 32) and aux["tokens"].shape == (2, 6, 32)
  np.testing.assert_array_equal(aux["mask"], TOKENS != 0)
  np.testing.assert_allclose(np.linalg.norm(pooled, axis=-1), 1, rtol=1e-5)


def test_params_are_berts(params):
  """The layout the importer fills: token, position and token-type tables, the embedding LayerNorm, and
  post-LayerNorm blocks without a final LayerNorm. The two-row token-type table is split over no model axis."""
  assert params["params"]["type_embedding"].names == (None, "embed")
  tree = jax.tree.map(np.shape, nn.unbox(params["params"]))
  assert tree["embed"]["embedding"]["embedding"] == (40, 32)
  assert tree["pos_embed"]["pos_embedding"] == (16, 32) and tree["type_embedding"] == (2, 32)
  assert set(tree["encoder"]) == {"block_0", "block_1"}
  assert set(tree["encoder"]["block_0"]) == {"attn", "ln_attn", "mlp", "ln_mlp"} and "embed_norm" in tree


def test_padding_changes_nothing(params):
  """More [PAD]s after a sentence leave its pooled vector and its tokens' outputs unchanged."""
  longer = jnp.pad(TOKENS, ((0, 0), (0, 5)))
  short, long = _apply(params, TOKENS), _apply(params, longer)
  np.testing.assert_allclose(short[0], long[0], atol=1e-5)
  np.testing.assert_allclose(short[1]["tokens"][0, :4], long[1]["tokens"][0, :4], atol=1e-5)


@pytest.mark.parametrize("pool", ["mean", "cls"])
def test_pooling(params, pool):
  """mean: every real token, [CLS] and [SEP] included (sentence-transformers' mean pooling); cls: the first."""
  pooled, aux = _apply(params, TOKENS, pool=pool, normalize=False)
  tokens = np.asarray(aux["tokens"])
  want = [tokens[0, :4].mean(0), tokens[1].mean(0)] if pool == "mean" else tokens[:, 0]
  np.testing.assert_allclose(pooled, np.stack(want), rtol=1e-5, atol=1e-6)
  assert not np.allclose(np.linalg.norm(pooled, axis=-1), 1, atol=1e-2)


def test_remat_and_bfloat16_keep_the_params_and_the_output(params):
  reference = _apply(params, TOKENS)[0]
  np.testing.assert_allclose(_apply(params, TOKENS, remat="full")[0], reference, atol=1e-6)
  half = _apply(params, TOKENS, dtype=jnp.bfloat16)[0]
  assert half.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(half, np.float32), reference, atol=0.05)


def test_bad_inputs_and_fields(params):
  with pytest.raises(errors.InputError, match=r"int tokens \[B, L\]; got float32\[2, 6\]"):
    _apply(params, TOKENS.astype(jnp.float32))
  with pytest.raises(errors.InputError, match="length 20 exceeds the position table"):
    _apply(params, jnp.ones((1, 20), jnp.int32))
  with pytest.raises(errors.ConfigError, match=r"Unknown BERT pooling 'last'; known: \['mean', 'cls'\]"):
    _apply(params, TOKENS, pool="last")


def test_built_by_name():
  encoder = build_encoder("text", {"name": "bert", **SMALL, "pool": "cls"}, dtype=jnp.bfloat16)
  assert isinstance(encoder, BertEncoder) and encoder.pool == "cls" and encoder.dtype == jnp.bfloat16
