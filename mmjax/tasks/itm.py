"""Contrastive pretraining plus image–text matching (ITM) on hard negatives mined in the global batch (ALBEF).

The ITM head (TwoTower's `itm` block) says whether an (image, text) pair matches, reading both towers' tokens
fused. Random pairs are too easy to teach it much, so each image gets a negative text and each text a negative
image, sampled in proportion to the softmax of their contrastive similarity (Li et al. 2021): the pairs the
contrastive embedding already confuses. Its use at evaluation is re-ranking the contrastive top-k
(mmjax.evaluators.itm_retrieval).
"""
import functools
from collections.abc import Callable
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from mmjax import errors
from mmjax.tasks.contrastive import ContrastiveTask


class HardNegatives(NamedTuple):
  """Mined partners: text_for_image[i] is image i's negative text, image_for_text[j] text j's negative image
  (indices into the batch); where image_has_negative[i] (text_has_negative[j]) is False, every candidate was a
  positive, the index means nothing and the pair must not enter the loss."""
  text_for_image: jax.Array
  image_for_text: jax.Array
  image_has_negative: jax.Array
  text_has_negative: jax.Array


def caption_positives(text: jax.Array) -> jax.Array:
  """int tokens [B, L] → bool[B, B], True where texts i and j are the same token row. On Shapes many images
  share a caption, and such a pair is a match: mining it as a negative would teach the head a wrong label."""
  return (text[:, None, :] == text[None, :, :]).all(-1)


def mine_hard_negatives(rng: jax.Array, similarity: jax.Array, positive: jax.Array) -> HardNegatives:
  """One negative text per image and one negative image per text, sampled from the softmax of `similarity`
  (f32[B, B] image×text logits, not differentiated) over the candidates that are not `positive` (bool[B, B]).

  Written on the global [B, B] arrays, so under jit with the batch sharded over devices and processes the
  indices equal one device's: the Gumbel noise of jax.random is a function of the key and the array's global
  shape, not of its sharding. jax_threefry_partitionable (True, the default since JAX 0.5) only lets each
  device make its own block of it without communication; the indices were the same on 1 and 8 devices with it
  off too (JAX 0.10.2), and tests/tasks/test_itm.py checks the equality.
  """
  text_key, image_key = jax.random.split(rng)
  logits = jnp.where(positive, -jnp.inf, jax.lax.stop_gradient(similarity).astype(jnp.float32))
  return HardNegatives(text_for_image=jax.random.categorical(text_key, logits, axis=1),
                       image_for_text=jax.random.categorical(image_key, logits, axis=0),
                       image_has_negative=~positive.all(1), text_has_negative=~positive.all(0))


def weighted_binary_loss(logits: jax.Array, labels: jax.Array, weights: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(sigmoid cross-entropy, accuracy of logit > 0), both means over the pairs weighted by `weights` (0 drops
  a pair). logits f32[P], labels and weights [P]."""
  weights = weights.astype(jnp.float32)
  loss = optax.sigmoid_binary_cross_entropy(logits, labels.astype(jnp.float32))
  correct = (logits > 0) == labels.astype(bool)
  total = weights.sum()
  return (weights * loss).sum() / total, (weights * correct).sum() / total


def _rows(side: dict[str, jax.Array], index: jax.Array) -> dict[str, jax.Array]:
  """A tower's {"tokens", "mask"} at the batch rows `index`."""
  return {"tokens": side["tokens"][index], "mask": side["mask"][index]}


class ContrastiveItmTask(ContrastiveTask):
  """loss = contrastive_weight · the contrastive loss (`config.task.loss`, as ContrastiveTask) + itm_weight · the
  ITM loss over 3B pairs: the B positives, each image with its mined text and each text with its mined image
  (ALBEF). `itm_trains_towers` (True in ALBEF) lets the ITM loss train the towers too; False stops its gradient
  at their tokens, so the towers learn from the contrastive loss alone — with the ITM head in a clip group of its
  own (config.optim.grad_clip_groups), bit for bit as in contrastive-only training — and re-ranking is a pure
  add-on to that model (configs/shapes_clip.py:itm=true). On Shapes, ITM training the towers moved the
  contrastive R@1 by as much as a change of seed, up or down (docs/results.md). A batch's `negative_text`
  (config.data.hard_negatives) joins the contrastive loss only: as further ITM negatives they lowered the
  re-ranked recall in a Shapes run (0.891/0.905).

  The model needs an `itm` block (config.model.itm). Mining uses the step's rng, so a rerun of a step mines the
  same negatives. Gradient accumulation is refused: mining couples every example with the whole batch, and the
  micro-batch GradCache of ContrastiveTask does not carry the fused pairs' gradients back.
  """

  def __init__(self, task_config: ml_collections.ConfigDict, model: nn.Module):
    super().__init__(task_config, model)
    if getattr(model, "itm", None) is None:
      raise errors.ConfigError("config.task.name='contrastive_itm' needs a matching head: set config.model.itm "
                               "(see configs/shapes_clip.py:itm=true).")
    self.contrastive_weight = float(task_config.contrastive_weight)
    self.itm_weight = float(task_config.itm_weight)
    self.itm_trains_towers = bool(task_config.itm_trains_towers)

  def loss_fn(self, params, batch: dict[str, jax.Array], rng: jax.Array) -> tuple[jax.Array, dict]:
    apply = functools.partial(self.model.apply, {"params": params})
    (image_emb, text_emb), aux = apply(batch["image"], batch["text"])
    negative_emb = None
    if "negative_text" in batch:
      negative_emb, _ = apply(batch["negative_text"], method=self.model.encode_text)
    contrastive, metrics = self._loss(params, (image_emb, text_emb, negative_emb))
    similarity = jnp.exp(params["logit_scale"]) * image_emb @ text_emb.T
    mined = mine_hard_negatives(rng, similarity, caption_positives(batch["text"]))
    image, text = aux["image"], aux["text"]
    if not self.itm_trains_towers:
      image, text = jax.lax.stop_gradient((image, text))
    every = jnp.ones_like(mined.image_has_negative)
    # (image side, text side, label, weight) of B pairs each: the positives, each image with its mined text and
    # each text with its mined image.
    pairs = [(image, text, True, every), (image, _rows(text, mined.text_for_image), False, mined.image_has_negative),
             (_rows(image, mined.image_for_text), text, False, mined.text_has_negative)]
    joined = lambda side, key: jnp.concatenate([pair[side][key] for pair in pairs])  # noqa: E731
    logits = apply(joined(0, "tokens"), joined(0, "mask"), joined(1, "tokens"), joined(1, "mask"),
                   method=self.model.match_logits)
    labels = jnp.concatenate([jnp.full_like(every, label) for _, _, label, _ in pairs])
    itm_loss, itm_accuracy = weighted_binary_loss(logits, labels, jnp.concatenate([pair[3] for pair in pairs]))
    loss = self.contrastive_weight * contrastive + self.itm_weight * itm_loss
    return loss, {**metrics, "loss": loss, "contrastive_loss": contrastive, "itm_loss": itm_loss,
                  "itm_accuracy": itm_accuracy}

  def value_and_grad(self, params, batch: dict[str, jax.Array], rng: jax.Array,
                     steps: int = 1) -> tuple[tuple[jax.Array, dict], dict]:
    if steps != 1:
      raise errors.ConfigError(f"config.grad_accum_steps={steps}: contrastive_itm mines negatives across the whole "
                               "batch, which micro-batches would not reproduce; set it to 1 (or lower batch_size).")
    return super().value_and_grad(params, batch, rng)

  def predict_fns(self) -> dict[str, Callable]:
    """ContrastiveTask's, plus the towers' tokens beside their embeddings and the ITM logits of token pairs
    (what mmjax.evaluators.itm_retrieval reads)."""
    def with_tokens(method: Callable) -> Callable:
      def encode(params, inputs):
        embedding, aux = self.model.apply({"params": params}, inputs, method=method)
        return embedding, aux["tokens"], aux["mask"]
      return encode

    def match(params, pairs):
      return self.model.apply({"params": params}, pairs["image_tokens"], pairs["image_mask"], pairs["text_tokens"],
                              pairs["text_mask"], method=self.model.match_logits)

    def contrastive_log_prob(params, cosines):
      """Cosine similarities of (image, text) pairs → the contrastive model's log-probability that they match:
      for the sigmoid loss log σ(scale·cos + bias); for the softmax loss scale·cos, the log-softmax over a query's
      candidates up to that query's own constant, which no ranking of its candidates sees."""
      logits = jnp.exp(params["logit_scale"]) * cosines
      return jax.nn.log_sigmoid(logits + params["logit_bias"]) if self.loss == "sigmoid" else logits

    return {**super().predict_fns(), "image_tokens": with_tokens(self.model.encode_image),
            "text_tokens": with_tokens(self.model.encode_text), "match": match,
            "contrastive_log_prob": contrastive_log_prob}
