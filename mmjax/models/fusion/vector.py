"""Fusions that combine the modalities' pooled vectors (feature level) or their class scores (decision
level). They yield no fused tokens, so a decoder cannot use them."""
from collections.abc import Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax import errors
from mmjax import nn as mnn
from mmjax.models.fusion.base import Dtype, Fusion, FusionOutput, mean, pooled_means, pooled_vector


def vote_logits(unimodal_logits: Mapping[str, jax.Array]) -> jax.Array:
  """Majority vote of the modalities' argmax as log-probabilities: {m: [B, C]} → f32[B, C].

  Returns log((votes + mean_probs) / (k + 1)), where votes[c] counts the k modalities whose argmax
  is c and mean_probs is the mean of their softmaxes. Votes are integers and each mean probability
  is below 1 (it is 1 only for a class every modality votes for), so the argmax is the vote winner;
  equal vote counts are broken by the higher mean probability, and exact ties then by the lowest
  class index. Each row sums to 1, and gradients flow through mean_probs (votes are constant).
  """
  stacked = jnp.stack([unimodal_logits[name].astype(jnp.float32) for name in sorted(unimodal_logits)])
  count, num_classes = stacked.shape[0], stacked.shape[-1]
  votes = jax.nn.one_hot(jnp.argmax(stacked, axis=-1), num_classes).sum(0)
  log_mean_probs = jax.nn.logsumexp(jax.nn.log_softmax(stacked, axis=-1), axis=0) - jnp.log(count)
  # Classes without votes stay in log space, where a vanishing probability is finite; the inner
  # `where` keeps log(0) and its infinite gradient out of the branch that is not taken.
  voted = votes > 0
  with_votes = jnp.log(jnp.where(voted, votes + jnp.exp(log_mean_probs), 1.0))
  return jnp.where(voted, with_votes, log_mean_probs) - jnp.log(count + 1.0)


class JointMlp(nn.Module):
  """The concatenated pooled vectors [B, k·D] → Dense(mlp_dim) → GELU → Dense(width) → [B, width]."""
  width: int
  mlp_dim: int
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = mnn.dense(self.mlp_dim, (None, "mlp"), self.dtype, self.param_dtype, "fc1")(x)
    x = nn.with_logical_constraint(nn.gelu(x), ("batch", "mlp"))
    return mnn.dense(self.width, ("mlp", "embed"), self.dtype, self.param_dtype, "fc2")(x)


class EarlyFusion(Fusion):
  """Feature-level concatenation: the modalities' mean-pooled vectors, concatenated [B, k·D], through
  an MLP → pooled [B, D]."""

  @nn.compact
  def __call__(self, tokens: Mapping[str, jax.Array], masks: Mapping[str, jax.Array]) -> FusionOutput:
    _, tokens, masks = self.inputs(tokens, masks)
    pooled = JointMlp(self.width, self.mlp_dim, self.dtype, self.param_dtype, name="joint_mlp")(
        jnp.concatenate(pooled_means(tokens, masks), -1))
    return FusionOutput(pooled=pooled_vector(pooled))


class WeightedMeanFusion(Fusion):
  """Feature level, the plainest fusion: pooled = Σ_m w_m · pooled_m, the modalities' mean-pooled vectors
  averaged with weights that sum to 1 — learned (the softmax of one parameter per modality, equal at init) or
  fixed (`weights`: one per modality in sorted name order, e.g. fusion_options={"weights": [0.7, 0.3]})."""
  weights: Sequence[float] | None = None

  @nn.compact
  def __call__(self, tokens: Mapping[str, jax.Array], masks: Mapping[str, jax.Array]) -> FusionOutput:
    names, tokens, masks = self.inputs(tokens, masks)
    if self.weights is None:
      logits = self.param("modality_weights", mnn.logical(nn.initializers.zeros, (None,)), (len(names),),
                          self.param_dtype)
      weights = jax.nn.softmax(logits.astype(jnp.float32))
    else:
      if len(self.weights) != len(names) or min(self.weights) < 0 or not sum(self.weights):
        raise errors.ConfigError(f"fusion_options.weights={list(self.weights)} must be {len(names)} non-negative "
                                 f"numbers, not all zero: one per modality of {names}, in that order.")
      weights = jnp.asarray(self.weights, jnp.float32) / sum(self.weights)
    stacked = jnp.stack(pooled_means(tokens, masks))
    return FusionOutput(pooled=pooled_vector(jnp.einsum("m,mbd->bd", weights.astype(stacked.dtype), stacked)))


class LateFusion(Fusion):
  """Decision-level: each modality's mean-pooled vector through its own head → unimodal logits, which
  `fuse` combines. pooled = the mean of the pooled vectors. A modality without valid tokens still
  contributes its head's logits on a zero vector."""
  decision_level = True

  def fuse(self, unimodal: dict[str, jax.Array]) -> jax.Array:
    """{modality: f32[B, C]} (sorted by name) → the fused logits f32[B, C]."""
    raise NotImplementedError

  @nn.compact
  def __call__(self, tokens: Mapping[str, jax.Array], masks: Mapping[str, jax.Array]) -> FusionOutput:
    names, tokens, masks = self.inputs(tokens, masks)
    pooled = pooled_means(tokens, masks)
    unimodal = self.heads(names, pooled)
    return FusionOutput(pooled=pooled_vector(mean(pooled)), logits=self.fuse(unimodal), unimodal_logits=unimodal)


class LateMean(LateFusion):
  """Decision-level: the mean of the modalities' heads' logits."""

  def fuse(self, unimodal: dict[str, jax.Array]) -> jax.Array:
    return mean(list(unimodal.values()))


class LateVote(LateFusion):
  """Decision-level: the majority vote of the modalities' heads, as `vote_logits` (trainable, with its tie-break)."""

  def fuse(self, unimodal: dict[str, jax.Array]) -> jax.Array:
    return vote_logits(unimodal)


class LateLearned(LateFusion):
  """Decision-level: Σ_m softmax(w)_m · logits_m, one learned weight per modality: equal at init, where it
  is late_mean, and free to learn to trust the more informative modalities."""

  def fuse(self, unimodal: dict[str, jax.Array]) -> jax.Array:
    weights = self.param("modality_weights", mnn.logical(nn.initializers.zeros, (None,)), (len(unimodal),),
                         self.param_dtype)
    return jnp.einsum("m,mbc->bc", jax.nn.softmax(weights.astype(jnp.float32)), jnp.stack(list(unimodal.values())))


class GatedFusion(Fusion):
  """Gated multimodal unit (GMU, Arevalo et al. 2017), for k modalities: h_m = tanh(Dense_m(pooled_m)),
  gates z = softmax over modalities of Dense_m(concat of all pooled) (one gate per modality and feature,
  so each feature picks its modality from all of them), pooled = Σ_m z_m ⊙ h_m. With two modalities
  this is the paper's sigmoid gate."""

  @nn.compact
  def __call__(self, tokens: Mapping[str, jax.Array], masks: Mapping[str, jax.Array]) -> FusionOutput:
    names, tokens, masks = self.inputs(tokens, masks)
    pooled = pooled_means(tokens, masks)
    hidden = jnp.stack([jnp.tanh(self.dense(self.width, (None, "embed"), f"{name}_hidden")(x))
                        for name, x in zip(names, pooled)], 1)
    joint = jnp.concatenate(pooled, -1)
    gates = jnp.stack([self.dense(self.width, (None, "embed"), f"{name}_gate")(joint) for name in names], 1)
    gates = jax.nn.softmax(gates.astype(jnp.float32), axis=1).astype(hidden.dtype)
    return FusionOutput(pooled=pooled_vector((gates * hidden).sum(1)))


class HybridFusion(Fusion):
  """Early + late: an `early` fusion's pooled vector through its own head, and each modality's head on its
  mean-pooled vector; logits = the mean of the early head's logits and the mean of the unimodal ones.
  pooled = the early pooled vector."""
  decision_level = True

  @nn.compact
  def __call__(self, tokens: Mapping[str, jax.Array], masks: Mapping[str, jax.Array]) -> FusionOutput:
    names, tokens, masks = self.inputs(tokens, masks)
    pooled = pooled_means(tokens, masks)
    fused = pooled_vector(JointMlp(self.width, self.mlp_dim, self.dtype, self.param_dtype, name="joint_mlp")(
        jnp.concatenate(pooled, -1)))
    early = mnn.ClassifierHead(self.mlp_dim, self.num_classes, self.dtype, self.param_dtype, name="joint_head")(fused)
    unimodal = self.heads(names, pooled)
    return FusionOutput(pooled=fused, logits=(early + mean(list(unimodal.values()))) / 2, unimodal_logits=unimodal)
