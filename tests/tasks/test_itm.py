"""Hard-negative mining for image–text matching, and the contrastive + ITM task on a tiny two-tower model."""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from mmjax import errors, models, tasks
from mmjax.parallel import sharding
from mmjax.tasks import caption_positives, mine_hard_negatives

# Eight captions, some repeated (rows 0, 2, 5 and rows 1, 6 are the same caption), as on Shapes.
CAPTIONS = jnp.array([[1, 2, 0], [3, 4, 0], [1, 2, 0], [5, 0, 0], [6, 7, 8], [1, 2, 0], [3, 4, 0], [9, 0, 0]])
ITM = dict(fusion="concat", width=32, depth=1, num_heads=2, mlp_dim=64, fusion_options={})


def _mine_many(similarity, positive, count):
  return jax.jit(jax.vmap(mine_hard_negatives, in_axes=(0, None, None)))(
      jax.random.split(jax.random.key(0), count), similarity, positive)


def test_positives_are_the_diagonal_and_every_identical_caption():
  positive = np.asarray(caption_positives(CAPTIONS))
  assert positive.diagonal().all()
  assert positive[0, 2] and positive[2, 5] and positive[6, 1] and not positive[0, 1] and not positive[3, 7]
  assert positive.sum() == 3 * 3 + 2 * 2 + 3


def test_mining_never_picks_a_positive_even_a_duplicate_caption():
  # A duplicate caption gets the largest similarity: it is what a careless miner would pick.
  positive = caption_positives(CAPTIONS)
  similarity = jax.random.normal(jax.random.key(1), positive.shape) + 20.0 * positive
  mined = _mine_many(similarity, positive, 500)
  positive = np.asarray(positive)
  rows = np.arange(8)
  assert not positive[rows, np.asarray(mined.text_for_image)].any()
  assert not positive[np.asarray(mined.image_for_text), rows].any()
  assert np.asarray(mined.image_has_negative).all() and np.asarray(mined.text_has_negative).all()
  # Every negative is picked sometimes: the sampling is not an argmax.
  assert len(np.unique(np.asarray(mined.text_for_image)[:, 0])) == (~positive[0]).sum()


def test_a_row_of_positives_only_is_flagged():
  texts = CAPTIONS.at[:].set(CAPTIONS[0])  # One caption for the whole batch: no negative anywhere.
  mined = mine_hard_negatives(jax.random.key(0), jnp.zeros((8, 8)), caption_positives(texts))
  assert not np.asarray(mined.image_has_negative).any() and not np.asarray(mined.text_has_negative).any()


def test_hand_computed_sampling_frequencies():
  # Image 0's candidates: itself (positive, logit 9), then negatives with softmax weights 1 : 2 : 3.
  # Text 3's candidates (column 3): image 2 at +40 outweighs the others by e^40, so it is always picked.
  similarity = np.zeros((4, 4), np.float32)
  similarity[0] = [9.0, 0.0, np.log(2), np.log(3)]
  similarity[2, 3] = 40.0
  mined = _mine_many(jnp.asarray(similarity), jnp.eye(4, dtype=bool), 6000)
  frequencies = np.bincount(np.asarray(mined.text_for_image)[:, 0], minlength=4) / 6000
  np.testing.assert_allclose(frequencies, [0.0, 1 / 6, 2 / 6, 3 / 6], atol=0.02)
  assert (np.asarray(mined.image_for_text)[:, 3] == 2).all()


def test_mining_is_the_same_on_one_device_and_on_a_batch_sharded_over_eight():
  batch = 16
  similarity = jax.random.normal(jax.random.key(3), (batch, batch)) * 3
  texts = jnp.concatenate([CAPTIONS, CAPTIONS[::-1]])
  mine = lambda rng, sim, text: mine_hard_negatives(rng, sim, caption_positives(text))  # noqa: E731
  single_mesh = sharding.make_mesh({"data": 1}, jax.devices()[:1])
  many_mesh = sharding.make_mesh({"data": 4, "fsdp": 2})
  results = []
  for mesh in (single_mesh, many_mesh):
    rows = NamedSharding(mesh, P(("data", "fsdp") if "fsdp" in mesh.shape else "data"))
    args = (jax.random.key(7), jax.device_put(similarity, rows), jax.device_put(texts, rows))
    results.append(jax.jit(mine, in_shardings=(NamedSharding(mesh, P()), rows, rows))(*args))
  assert len(results[1].text_for_image.sharding.device_set) == 8
  for single, sharded in zip(*results):
    np.testing.assert_array_equal(np.asarray(single), np.asarray(sharded))


def _task():
  model = models.TwoTower(image=dict(name="vit", variant="Nano/8", width=32, depth=1, num_heads=2, mlp_dim=64),
                          text=dict(name="transformer", vocab_size=16, width=32, depth=1, num_heads=2, mlp_dim=64,
                                    max_len=3),
                          embed_dim=16, itm=ITM)
  # No weight on the contrastive loss and towers the ITM loss may not train: the towers' gradient must be 0.
  config = ml_collections.ConfigDict(dict(name="contrastive_itm", loss="softmax", contrastive_weight=0.0,
                                          itm_weight=0.5, itm_trains_towers=False))
  return tasks.ContrastiveItmTask(config, model)


@functools.cache
def _compiled():
  """(task, params, jitted task.value_and_grad), shared by the tests below so they compile it once."""
  task = _task()
  params = jax.jit(task.init)(jax.random.key(0, impl="rbg"), _batch(CAPTIONS))["params"]
  return task, params, jax.jit(task.value_and_grad)


def _batch(texts):
  """Images, their captions and a `negative_text` per image (here simply the caption reversed)."""
  images = jax.random.uniform(jax.random.key(2), (len(texts), 16, 16, 3))
  return {"image": images, "text": texts, "negative_text": texts[::-1]}


def test_loss_and_gradient_are_finite_weighted_and_reach_the_towers_only_if_asked():
  """contrastive_weight 0, itm_weight 0.5, itm_trains_towers=False: the gradient reaches the ITM part only."""
  task, params, value_and_grad = _compiled()
  (loss, metrics), grads = value_and_grad(params, _batch(CAPTIONS), jax.random.key(1, impl="rbg"))
  assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves((metrics, grads)))
  assert {"loss", "contrastive_loss", "itm_loss", "itm_accuracy", "temperature"} <= set(metrics)
  assert metrics["contrastive_loss"] > 0 and metrics["itm_loss"] > 0
  np.testing.assert_allclose(loss, 0.5 * metrics["itm_loss"], rtol=1e-6)
  norms = {name: float(optax.global_norm(tree)) for name, tree in grads.items()}
  assert norms["itm_head"] > 0 and norms["itm_fusion"] > 0 and norms["itm_image_proj"] > 0
  assert norms["image_encoder"] == norms["text_encoder"] == norms["image_proj"] == norms["logit_scale"] == 0


def test_without_negatives_the_itm_loss_is_the_positives_alone():
  """One caption for the batch: mining has nothing to offer and no mined pair may enter the loss (a wrong label);
  the batch's negative_text joins the contrastive loss only. What remains is the B positives."""
  task, params, value_and_grad = _compiled()
  batch = _batch(CAPTIONS.at[:].set(CAPTIONS[4]))
  (_, metrics), _ = value_and_grad(params, batch, jax.random.key(1, impl="rbg"))
  model = task.model

  def positive_logits(params):
    _, aux = model.apply({"params": params}, batch["image"], batch["text"])
    return model.apply({"params": params}, aux["image"]["tokens"], aux["image"]["mask"], aux["text"]["tokens"],
                       aux["text"]["mask"], method=model.match_logits)

  positives = np.asarray(jax.jit(positive_logits)(params))
  np.testing.assert_allclose(metrics["itm_loss"], np.mean(np.logaddexp(0, -positives)), rtol=1e-5)
  np.testing.assert_allclose(metrics["itm_accuracy"], np.mean(positives > 0), rtol=1e-6)


@pytest.mark.parametrize("loss", ["softmax", "sigmoid"])
def test_contrastive_log_prob_is_the_losses_logit(loss):
  task = _task()
  task.loss = loss
  cosines = jnp.array([0.5, -0.25])
  params = {"logit_scale": jnp.log(4.0), "logit_bias": jnp.array(-1.0)}
  expected = 4 * np.asarray(cosines) if loss == "softmax" else -np.logaddexp(0, -(4 * np.asarray(cosines) - 1))
  np.testing.assert_allclose(task.predict_fns()["contrastive_log_prob"](params, cosines), expected, rtol=1e-6)


def test_refuses_accumulation_and_a_model_without_itm():
  task = _task()
  with pytest.raises(errors.ConfigError, match="grad_accum_steps=2"):
    task.value_and_grad({}, {}, jax.random.key(0), steps=2)
  plain = task.model.clone(itm=None)
  with pytest.raises(errors.ConfigError, match="config.model.itm"):
    tasks.ContrastiveItmTask(ml_collections.ConfigDict(dict(loss="softmax", contrastive_weight=1.0, itm_weight=1.0,
                                                            itm_trains_towers=True)), plain)


def test_the_itm_config_builds_the_task_and_its_evaluators():
  """`configs/shapes_clip.py:smoke,itm=true` → a contrastive_itm task whose params include the ITM head, and
  itm_retrieval evals; the plain config's model has no ITM params (its checkpoints are unchanged)."""
  from configs import shapes_clip

  shapes = {"image": jax.ShapeDtypeStruct((1, 48, 48, 3), jnp.float32),
            "text": jax.ShapeDtypeStruct((1, 18), jnp.int32)}
  for arg, task_type, eval_name in (("smoke,itm=true", tasks.ContrastiveItmTask, "itm_retrieval"),
                                    ("smoke", tasks.ContrastiveTask, "retrieval")):
    config = shapes_clip.get_config(arg)
    task = tasks.build(config, models.build(config.model, vocab_size=64), tokenizer=None)
    params = nn.unbox(jax.eval_shape(task.init, jax.random.key(0), shapes)["params"])
    assert type(task) is task_type and {config.evals.test.name, config.evals.heldout.name} == {eval_name}
    assert sorted(k for k in params if k.startswith("itm_")) == (
        ["itm_fusion", "itm_head", "itm_image_proj", "itm_text_proj"] if task_type is tasks.ContrastiveItmTask else [])


def test_detached_itm_with_its_own_clip_group_leaves_the_towers_gradient_that_of_contrastive_only():
  """configs/shapes_clip.py:itm=true's setting: the ITM loss stops at the towers' tokens and the ITM head is
  clipped on its own norm, so the towers get exactly the clipped gradient of contrastive-only training (the
  paired comparison of re-ranking rests on it). With one global norm, the head's gradient would shrink it."""
  from mmjax.trainer import optimizer

  base, params, _ = _compiled()
  itm_task = tasks.ContrastiveItmTask(ml_collections.ConfigDict(dict(
      loss="softmax", contrastive_weight=1.0, itm_weight=100.0, itm_trains_towers=False)), base.model)
  plain_task = tasks.ContrastiveTask(ml_collections.ConfigDict(dict(loss="softmax")), base.model.clone(itm=None))
  plain_params = {name: value for name, value in params.items() if not name.startswith("itm_")}
  batch, rng = _batch(CAPTIONS), jax.random.key(1, impl="rbg")

  def towers_clipped(task, params, groups):
    _, grads = task.value_and_grad(params, batch, rng)
    clip = optimizer.clip_gradients(1e-3, groups)  # A tiny norm: clipping is active, so its coupling would show.
    clipped, _ = clip.update(grads, clip.init(params))
    return {name: value for name, value in clipped.items() if not name.startswith("itm_")}

  clipped = jax.jit(towers_clipped, static_argnums=(0, 2))
  expected, grouped = clipped(plain_task, plain_params, ()), clipped(itm_task, params, ("itm_",))
  for got, want in zip(jax.tree.leaves(grouped), jax.tree.leaves(expected)):
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-12)
  assert optax.global_norm(clipped(itm_task, params, ())) < 0.9 * optax.global_norm(expected)
