"""Forward shapes, masks and size decoding of the ViT and text encoders and the two-tower model."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmjax import nn as mnn
from mmjax.models import TwoTower
from mmjax.models.encoders import TextTransformer, ViT, decode_variant

TEXT = dict(vocab_size=32, width=32, depth=2, num_heads=2, mlp_dim=64, max_len=12)


def test_decode_variant():
  assert decode_variant("S/8") == dict(width=384, depth=12, num_heads=6, mlp_dim=1536, patch_size=8)
  assert decode_variant("Micro/16")["patch_size"] == 16
  with pytest.raises(ValueError, match="'<size>/<patch>'"):
    decode_variant("Q/8")


def test_vit_shapes_and_overrides():
  vit = ViT(variant="Nano/8", width=48, num_heads=3)
  image = jnp.zeros((2, 32, 32, 3))
  params = jax.jit(vit.init)(jax.random.PRNGKey(0), image)
  pooled, aux = jax.jit(vit.apply)(params, image)
  assert pooled.shape == (2, 48)
  assert aux["tokens"].shape == (2, 1 + 16, 48)  # class token + (32/8)^2 patches.


def test_vit_rejects_bad_patch():
  with pytest.raises(ValueError, match="not divisible by patch size 8"):
    jax.eval_shape(ViT(variant="Nano/8").init, jax.random.PRNGKey(0), jnp.zeros((1, 30, 30, 3)))


def test_attention_rejects_bad_heads():
  with pytest.raises(ValueError, match="not divisible by num_heads=3"):
    jax.eval_shape(mnn.MultiHeadAttention(3).init, jax.random.PRNGKey(0), jnp.zeros((1, 4, 8)), jnp.zeros((1, 4, 8)))


@pytest.mark.parametrize("causal,pool", [(True, "last"), (False, "mean")])
def test_text_padding_changes_nothing(causal, pool):
  """Extra padding after the text must not change the pooled embedding."""
  model = TextTransformer(**TEXT, causal=causal, pool=pool)
  short = jnp.array([[5, 6, 7, 3, 0, 0]])
  long = jnp.array([[5, 6, 7, 3, 0, 0, 0, 0, 0, 0]])
  params = jax.jit(model.init)(jax.random.PRNGKey(0), short)
  apply = jax.jit(model.apply)
  np.testing.assert_allclose(apply(params, short)[0], apply(params, long)[0], atol=1e-5)


def test_causal_text_prefix_is_independent_of_suffix():
  """With a causal mask, token t's output depends only on tokens ≤ t."""
  model = TextTransformer(**TEXT, causal=True)
  a = jnp.array([[5, 6, 7, 8, 3]])
  b = jnp.array([[5, 6, 9, 9, 3]])
  params = jax.jit(model.init)(jax.random.PRNGKey(0), a)
  apply = jax.jit(model.apply)
  tokens_a = apply(params, a)[1]["tokens"]
  tokens_b = apply(params, b)[1]["tokens"]
  np.testing.assert_allclose(tokens_a[:, :2], tokens_b[:, :2], atol=1e-5)
  assert not np.allclose(tokens_a[:, 2], tokens_b[:, 2], atol=1e-3)


def test_last_pooling_takes_end_of_text():
  tokens = jnp.arange(2 * 4 * 3, dtype=jnp.float32).reshape(2, 4, 3)
  mask = jnp.array([[1, 1, 0, 0], [1, 1, 1, 1]], bool)
  np.testing.assert_array_equal(mnn.pool_tokens(tokens, mask, "last"), tokens[jnp.arange(2), jnp.array([1, 3])])
  np.testing.assert_allclose(mnn.pool_tokens(tokens, mask, "mean")[0], tokens[0, :2].mean(0))


def test_two_tower_outputs_unit_embeddings():
  model = TwoTower(image=dict(name="vit", variant="Nano/8"), text=dict(name="transformer", **TEXT), embed_dim=16,
                   logit_bias_init=-10.0)
  image, text = jnp.ones((3, 16, 16, 3)), jnp.array([[4, 5, 3, 0]] * 3)
  params = jax.jit(model.init)(jax.random.PRNGKey(0), image, text)
  (image_emb, text_emb), aux = jax.jit(model.apply)(params, image, text)
  assert image_emb.shape == text_emb.shape == (3, 16)
  np.testing.assert_allclose(jnp.linalg.norm(image_emb, axis=-1), 1, rtol=1e-5)
  np.testing.assert_allclose(jnp.linalg.norm(text_emb, axis=-1), 1, rtol=1e-5)
  np.testing.assert_allclose(aux["logit_bias"], -10.0)
  # The named entry points agree with the joint call.
  encode_image = jax.jit(lambda p, x: model.apply(p, x, method=model.encode_image))
  np.testing.assert_allclose(encode_image(params, image)[0], image_emb, atol=1e-6)


def test_sincos_2d_table():
  table = mnn.sincos_2d(3, 3, 16)
  assert table.shape == (9, 16)
  # Every grid position gets its own code, and the first column pair is sin/cos of the x index.
  assert len({tuple(np.round(row, 5)) for row in np.asarray(table)}) == 9
  np.testing.assert_allclose(table[:3, 0], np.sin([0.0, 1.0, 2.0]), atol=1e-6)
  np.testing.assert_allclose(table[:3, 4], np.cos([0.0, 1.0, 2.0]), atol=1e-6)
  with pytest.raises(ValueError, match="divisible by 4"):
    mnn.sincos_2d(3, 3, 10)
