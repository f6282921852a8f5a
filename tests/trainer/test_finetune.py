"""init_from and freeze: which weights load from a pretrained run, and which stay fixed."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import common
from mmjax.models import Captioner, TwoTower
from mmjax.trainer import finetune, optimizer
from mmjax import errors

IMAGE = dict(name="vit", variant="Nano/8", width=32, num_heads=2)
TEXT = dict(name="transformer", vocab_size=24, width=32, depth=1, num_heads=2, mlp_dim=64, max_len=8)
DECODER = dict(vocab_size=24, depth=1, num_heads=2, mlp_dim=64, max_len=6)
FUSED = dict(fusion="concat", width=32, fusion_depth=0, num_heads=2, mlp_dim=64, decoder=DECODER)
IMAGE_BATCH, TOKENS = jnp.zeros((1, 16, 16, 3)), jnp.ones((1, 4), jnp.int32)


def _params(model, seed, *inputs):
  """Initial params; an RBG key, because XLA compiles each threefry draw of an init separately."""
  return jax.device_get(nn.unbox(jax.jit(model.init)(jax.random.key(seed, impl="rbg"), *inputs)["params"]))


def _captioner(image=IMAGE, text=TEXT) -> Captioner:
  return Captioner(encoders={"image": image, **({"text": text} if text else {})}, **FUSED)


def _inputs(text: bool = True) -> dict:
  return {"image": IMAGE_BATCH, **({"text": TOKENS} if text else {})}


@pytest.fixture(scope="module")
def pretrained():
  return _params(TwoTower(image=IMAGE, text=TEXT, embed_dim=16), 1, IMAGE_BATCH, TOKENS)


def _assert_trees_equal(a, b):
  jax.tree.map(np.testing.assert_array_equal, a, b)


def test_loads_both_towers_and_nothing_else(pretrained):
  fresh = _params(_captioner(), 0, _inputs(), TOKENS)
  params, loaded = finetune.load_towers(fresh, pretrained)
  assert loaded == ["image_encoder", "text_encoder"]
  _assert_trees_equal(params["image_encoder"], pretrained["image_encoder"])
  _assert_trees_equal(params["text_encoder"], pretrained["text_encoder"])
  for name in set(fresh) - {"image_encoder", "text_encoder"}:  # Projections, fusion, decoder.
    _assert_trees_equal(params[name], fresh[name])
  # The fresh towers really differed, so equality above means they were replaced.
  assert not np.allclose(fresh["image_encoder"]["patch_embed"]["conv"]["kernel"],
                         pretrained["image_encoder"]["patch_embed"]["conv"]["kernel"])


def test_skips_a_text_tower_that_does_not_fit(pretrained):
  fresh = _params(_captioner(text=dict(TEXT, width=48)), 0, _inputs(), TOKENS)
  params, loaded = finetune.load_towers(fresh, pretrained)
  assert loaded == ["image_encoder"]
  _assert_trees_equal(params["text_encoder"], fresh["text_encoder"])


def test_an_image_tower_that_does_not_fit_is_an_error(pretrained):
  fresh = _params(_captioner(image=dict(IMAGE, width=48), text=None), 0, _inputs(text=False), TOKENS)
  with pytest.raises(errors.ConfigError, match="pretrained image_encoder does not fit image_encoder: make this "
                                               "model's image encoder config match"):
    finetune.load_towers(fresh, pretrained)


def test_an_audio_tower_that_does_not_fit_is_an_error():
  audio = {"audio_encoder": {"dense": {"kernel": np.zeros((3, 4))}}}
  with pytest.raises(errors.ConfigError, match="pretrained audio_encoder does not fit audio_encoder: make this "
                                               "model's audio encoder config match"):
    finetune.load_towers({"audio_encoder": {"dense": {"kernel": np.zeros((3, 8))}}}, audio)


def test_parse_towers():
  assert finetune.parse_towers("image, text") == ["image_encoder", "text_encoder"]
  assert finetune.parse_towers("") == []
  with pytest.raises(errors.ConfigError, match=r"unknown towers \['decoder'\]"):
    finetune.parse_towers("decoder")


def test_frozen_tower_gets_no_updates():
  model = _captioner(text=None)
  params = _params(model, 0, _inputs(text=False), TOKENS)
  optim_config = common.optim(lr=1e-3, warmup_steps=0, weight_decay=1e-4)
  tx = finetune.with_frozen_towers(optimizer.make_optimizer(optim_config, total_steps=10)[0], "image")
  state = tx.init(params)
  image = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (2, 16, 16, 3)), jnp.float32)
  tokens = jnp.array([[2, 5, 6, 3], [2, 7, 3, 0]])

  @jax.jit
  def step(params, state):
    loss = lambda p: -jax.nn.log_softmax(model.apply({"params": p}, {"image": image}, tokens))[..., 5].mean()
    updates, state = tx.update(jax.grad(loss)(params), state, params)
    return optax.apply_updates(params, updates), state

  new = params
  for _ in range(3):
    new, state = step(new, state)
  _assert_trees_equal(new["image_encoder"], params["image_encoder"])
  assert not np.allclose(new["text_decoder"]["embed"]["embedding"], params["text_decoder"]["embed"]["embedding"])
  with pytest.raises(errors.ConfigError, match=r"names \['text_encoder'\], which this model does not have"):
    finetune.with_frozen_towers(optimizer.make_optimizer(optim_config, 10)[0], "text").init(params)


def test_a_frozen_towers_backward_pass_is_not_computed():
  """zero_frozen replaces its gradient by zeros that do not depend on it, so XLA drops its backward pass: the
  compiled gradient step of a model with a frozen image tower costs fewer flops, and its other gradients are
  unchanged."""
  model = _captioner(text=None)
  params = _params(model, 0, _inputs(text=False), TOKENS)
  image = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (2, 16, 16, 3)), jnp.float32)
  tokens = jnp.array([[2, 5, 6, 3], [2, 7, 3, 0]])

  def grads(params, frozen):
    loss = lambda p: -jax.nn.log_softmax(model.apply({"params": p}, {"image": image}, tokens))[..., 5].mean()
    return finetune.zero_frozen(jax.grad(loss)(params), frozen)

  compiled = {frozen: jax.jit(grads, static_argnums=1).lower(params, frozen).compile()
              for frozen in ((), ("image_encoder",))}
  flops = {frozen: step.cost_analysis()["flops"] for frozen, step in compiled.items()}
  assert flops[("image_encoder",)] < 0.9 * flops[()], flops
  frozen, full = compiled[("image_encoder",)](params), compiled[()](params)
  assert all(not np.any(leaf) for leaf in jax.tree.leaves(frozen["image_encoder"]))
  np.testing.assert_allclose(frozen["text_decoder"]["embed"]["embedding"], full["text_decoder"]["embed"]["embedding"],
                             rtol=1e-6)


def test_init_from_names_several_runs_and_each_seeds_own():
  runs = "/sweep/runs/pretrain=image,seed={seed}: /sweep/runs/pretrain=audio,seed={seed}"
  assert finetune.init_from_runs(runs, seed=2) == ["/sweep/runs/pretrain=image,seed=2",
                                                   "/sweep/runs/pretrain=audio,seed=2"]
  assert finetune.init_from_runs("runs/clip", seed=5) == ["runs/clip"]
  assert finetune.init_from_runs("", seed=0) == []


def test_each_tower_comes_from_the_one_run_that_has_it(pretrained):
  fresh = _params(_captioner(), 0, _inputs(), TOKENS)
  image_run, text_run = {"image_encoder": pretrained["image_encoder"]}, {"text_encoder": pretrained["text_encoder"]}
  assert finetune.towers_by_run(fresh, {"runs/a": image_run, "runs/b": text_run}) == {
      "image_encoder": "runs/a", "text_encoder": "runs/b"}
  # A tower this model lacks may be in any number of runs.
  audio = {"audio_encoder": {"w": np.zeros(1)}}
  assert finetune.towers_by_run(fresh, {"runs/a": {**image_run, **audio}, "runs/b": {**text_run, **audio}}) == {
      "image_encoder": "runs/a", "text_encoder": "runs/b"}
  with pytest.raises(errors.ConfigError, match=r"^config.init_from: image_encoder is in both runs/a and runs/b; "
                                               r"name only one run that has it.$"):
    finetune.towers_by_run(fresh, {"runs/a": image_run, "runs/b": pretrained})
  with pytest.raises(errors.ConfigError, match=r"^config.init_from: runs/c has none of this model's towers "
                                               r"\['image_encoder', 'text_encoder'\] \(it has \['audio_encoder'\]\).$"):
    finetune.towers_by_run(fresh, {"runs/a": pretrained, "runs/c": audio})
