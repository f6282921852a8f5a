"""init_from and freeze: which weights load from a pretrained run, and which stay fixed."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import common
from mmjax import errors, finetune, optim
from mmjax.models import Captioner, TwoTower

IMAGE = dict(variant="Nano/8", width=32, num_heads=2)
TEXT = dict(vocab_size=24, width=32, depth=1, num_heads=2, mlp_dim=64, max_len=8)
DECODER = dict(vocab_size=24, width=32, depth=1, num_heads=2, mlp_dim=64, max_len=6)
IMAGE_BATCH, TOKENS = jnp.zeros((1, 16, 16, 3)), jnp.ones((1, 4), jnp.int32)


def _params(model, seed, *inputs):
  return jax.device_get(nn.unbox(jax.jit(model.init)(jax.random.PRNGKey(seed), *inputs)["params"]))


@pytest.fixture(scope="module")
def pretrained():
  return _params(TwoTower(image=IMAGE, text=TEXT, embed_dim=16), 1, IMAGE_BATCH, TOKENS)


def _assert_trees_equal(a, b):
  jax.tree.map(np.testing.assert_array_equal, a, b)


def test_loads_both_towers_and_nothing_else(pretrained):
  fresh = _params(Captioner(image=IMAGE, text=TEXT, decoder=DECODER), 0, IMAGE_BATCH, TOKENS, TOKENS)
  params, loaded = finetune.load_towers(fresh, pretrained)
  assert loaded == ["encoder/image_encoder", "encoder/text_encoder"]
  _assert_trees_equal(params["encoder"]["image_encoder"], pretrained["image_encoder"])
  _assert_trees_equal(params["encoder"]["text_encoder"], pretrained["text_encoder"])
  for name in ("image_proj", "text_proj"):
    _assert_trees_equal(params["encoder"][name], fresh["encoder"][name])
  _assert_trees_equal(params["text_decoder"], fresh["text_decoder"])
  # The fresh towers really differed, so equality above means they were replaced.
  assert not np.allclose(fresh["encoder"]["image_encoder"]["patch_embed"]["conv"]["kernel"],
                         pretrained["image_encoder"]["patch_embed"]["conv"]["kernel"])


def test_skips_a_text_tower_that_does_not_fit(pretrained):
  wider = dict(TEXT, width=48)
  fresh = _params(Captioner(image=IMAGE, text=wider, decoder=DECODER), 0, IMAGE_BATCH, TOKENS, TOKENS)
  params, loaded = finetune.load_towers(fresh, pretrained)
  assert loaded == ["encoder/image_encoder"]
  _assert_trees_equal(params["encoder"]["text_encoder"], fresh["encoder"]["text_encoder"])


def test_an_image_tower_that_does_not_fit_is_an_error(pretrained):
  fresh = _params(Captioner(image=dict(IMAGE, width=48), decoder=DECODER), 0, IMAGE_BATCH, TOKENS)
  with pytest.raises(errors.ConfigError, match="pretrained image_encoder does not fit encoder/image_encoder"):
    finetune.load_towers(fresh, pretrained)


def test_parse_towers():
  assert finetune.parse_towers("image, text") == ["image_encoder", "text_encoder"]
  assert finetune.parse_towers("") == []
  with pytest.raises(errors.ConfigError, match=r"unknown towers \['decoder'\]"):
    finetune.parse_towers("decoder")


def test_frozen_tower_gets_no_updates():
  model = Captioner(image=IMAGE, decoder=DECODER)
  params = _params(model, 0, IMAGE_BATCH, TOKENS)
  tx, _ = optim.make_optimizer(common.optim_config(warmup_steps=0), total_steps=10, frozen=["image_encoder"])
  state = tx.init(params)
  image = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (2, 16, 16, 3)), jnp.float32)
  tokens = jnp.array([[2, 5, 6, 3], [2, 7, 3, 0]])

  @jax.jit
  def step(params, state):
    loss = lambda p: -jax.nn.log_softmax(model.apply({"params": p}, image, tokens))[..., 5].mean()  # noqa: E731
    updates, state = tx.update(jax.grad(loss)(params), state, params)
    return optax.apply_updates(params, updates), state

  new = params
  for _ in range(3):
    new, state = step(new, state)
  _assert_trees_equal(new["encoder"]["image_encoder"], params["encoder"]["image_encoder"])
  assert not np.allclose(new["text_decoder"]["embed"]["embedding"], params["text_decoder"]["embed"]["embedding"])
  with pytest.raises(errors.ConfigError, match=r"names \['text_encoder'\], which this model does not have"):
    optim.make_optimizer(common.optim_config(warmup_steps=0), 10, frozen=["text_encoder"])[0].init(params)
