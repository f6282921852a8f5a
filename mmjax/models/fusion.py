"""The fusion zoo: every way of combining per-modality token sequences, behind one interface.

A fusion is called as `fusion(tokens, masks) -> FusionOutput`, where `tokens` maps modality names
("image", "audio", "text", ...) to f32[B, N_m, width] (already projected to the fusion's width) and
`masks` maps the same names to bool[B, N_m] (True = a valid token; a row may be entirely False, e.g.
a modality zeroed out in an ablation). Modalities are processed in sorted name order, so the result
does not depend on the dict's order, and parameters are named after the modalities.

No fusion adds positional information: each expects its inputs to carry their own, so permuting the
valid tokens of one modality leaves `pooled` and `logits` unchanged (and permutes the fused tokens
that come from them; `cross_attention`'s fused tokens are its queries, which are unchanged).

Decision-level fusions (`DECISION_LEVEL`) produce class scores themselves (`logits`), which a
classifier uses instead of a head on `pooled`; they need `num_classes`, which the others ignore.
`depth` counts the layers of the layered fusions (cross_attention, bottleneck, mult); the others have none.
"""
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from mmjax import errors
from mmjax import nn as mnn
from mmjax.nn.partitioning import DEFAULT_KERNEL_INIT, logical
from mmjax.nn.transformer import rematerialized

Dtype = Any
TOKENS = ("batch", "length", "embed")


@flax.struct.dataclass
class FusionOutput:
  """What every fusion returns.

  tokens: [B, N, D] and mask: bool[B, N], the fused sequence a decoder cross-attends to (tokens and
  pooled are in the compute `dtype`, as encoders' outputs are; logits always float32);
  pooled: [B, D], the fused vector a classifier head reads;
  logits: f32[B, num_classes] from decision-level fusions, else None;
  unimodal_logits: {modality: f32[B, num_classes]} from fusions with per-modality heads (for
  per-modality auxiliary losses), else None.
  """
  tokens: jax.Array
  mask: jax.Array
  pooled: jax.Array
  logits: jax.Array | None = None
  unimodal_logits: dict[str, jax.Array] | None = None


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


def _dense(module: nn.Module, features: int, names: tuple[str | None, str | None], name: str) -> nn.Dense:
  """A Dense layer with `module`'s dtypes, its kernel's logical axes `names` and its bias's `names[1]`."""
  return nn.Dense(features, dtype=module.dtype, param_dtype=module.param_dtype, name=name,
                  kernel_init=logical(DEFAULT_KERNEL_INIT, names), bias_init=logical(nn.initializers.zeros, names[1:]))


class ClassifierHead(nn.Module):
  """[B, D] → Dense(mlp_dim) → GELU → Dense(num_classes) → f32[B, num_classes]."""
  mlp_dim: int
  num_classes: int
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = nn.with_logical_constraint(nn.gelu(_dense(self, self.mlp_dim, ("embed", "mlp"), "hidden")(x)), ("batch", "mlp"))
    return _dense(self, self.num_classes, ("mlp", None), "logits")(x).astype(jnp.float32)


class JointMlp(nn.Module):
  """The concatenated pooled vectors [B, k·D] → Dense(mlp_dim) → GELU → Dense(width) → [B, width]."""
  width: int
  mlp_dim: int
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = nn.with_logical_constraint(nn.gelu(_dense(self, self.mlp_dim, (None, "mlp"), "fc1")(x)), ("batch", "mlp"))
    return _dense(self, self.width, ("mlp", "embed"), "fc2")(x)


class CrossAttentionBlock(nn.Module):
  """x + Attn(LN(x), LN(context)); x + MLP(LN(x)). x: [B, Q, D], context: [B, K, D], mask: bool[B, 1, Q, K].

  A query with no valid key (its source modality entirely masked) gets no attention update: the
  softmax over all-masked logits would otherwise average the padding into it.
  """
  num_heads: int
  mlp_dim: int
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, context: jax.Array, mask: jax.Array) -> jax.Array:
    norm = lambda name: mnn.layer_norm(name, self.dtype, self.param_dtype)  # noqa: E731
    y = mnn.MultiHeadAttention(self.num_heads, self.dtype, self.param_dtype, name="attn")(
        norm("ln_query")(x), norm("ln_context")(context), mask)
    x = nn.with_logical_constraint(x + y * mask.any(-1)[:, 0, :, None].astype(y.dtype), TOKENS)
    y = mnn.MlpBlock(self.mlp_dim, self.dtype, self.param_dtype, name="mlp")(norm("ln_mlp")(x))
    return nn.with_logical_constraint(x + y, TOKENS)


class Fusion(nn.Module):
  """Fields every fusion has; subclasses implement `__call__(tokens, masks) -> FusionOutput`."""
  width: int
  mlp_dim: int
  num_heads: int = 4
  depth: int = 1
  num_classes: int = 0  # Used only by decision-level fusions, which require it ≥ 1.
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  remat: str = "none"  # A policy of mmjax.nn.transformer.REMAT_POLICIES, for every Transformer block.

  decision_level = False  # Whether `logits` is set (a class attribute, not a field: no annotation).

  def __post_init__(self):
    if self.decision_level and self.num_classes < 1:
      raise errors.ConfigError(f"{type(self).__name__} produces class scores itself: set its num_classes "
                               f"(got {self.num_classes}) to the number of classes.")
    super().__post_init__()

  def inputs(self, tokens: Mapping[str, jax.Array], masks: Mapping[str, jax.Array]
             ) -> tuple[list[str], list[jax.Array], list[jax.Array]]:
    """Checks the inputs → (sorted modality names, their tokens [B, N_m, D], their masks bool[B, N_m])."""
    if not tokens or set(tokens) != set(masks):
      raise errors.InputError(f"A fusion needs tokens and masks for the same modalities, at least one; got tokens for "
                              f"{sorted(tokens)} and masks for {sorted(masks)}.")
    names = sorted(tokens)
    batch = tokens[names[0]].shape[0]
    for name in names:
      shape, mask_shape = tokens[name].shape, masks[name].shape
      if len(shape) != 3 or shape[-1] != self.width or shape[0] != batch:
        raise errors.InputError(f"tokens[{name!r}] has shape {shape}; a fusion of width {self.width} needs "
                                f"[B={batch}, N, {self.width}]: project every modality to the fusion's width.")
      if mask_shape != shape[:2]:
        raise errors.InputError(f"masks[{name!r}] has shape {mask_shape}, not its tokens' [B, N] = {shape[:2]}.")
    return names, [tokens[n].astype(self.dtype) for n in names], [masks[n].astype(bool) for n in names]

  def block(self, cls: type[nn.Module], name: str) -> nn.Module:
    """A Transformer block of this fusion's shape, rematerialized with its `remat` policy."""
    return rematerialized(cls, self.remat)(self.num_heads, self.mlp_dim, self.dtype, self.param_dtype, name=name)

  def concatenated(self, tokens: list[jax.Array], masks: list[jax.Array]) -> tuple[jax.Array, jax.Array]:
    return nn.with_logical_constraint(jnp.concatenate(tokens, 1), TOKENS), jnp.concatenate(masks, 1)

  def heads(self, names: list[str], pooled: list[jax.Array]) -> dict[str, jax.Array]:
    """Each modality's pooled [B, D] through its own ClassifierHead → {name: f32[B, num_classes]}."""
    return {name: ClassifierHead(self.mlp_dim, self.num_classes, self.dtype, self.param_dtype,
                                 name=f"head_{name}")(vector) for name, vector in zip(names, pooled)}


def _pooled(tokens: list[jax.Array], masks: list[jax.Array]) -> list[jax.Array]:
  return [mnn.pool_tokens(t, m, "mean") for t, m in zip(tokens, masks)]


def _mean(arrays: list[jax.Array]) -> jax.Array:
  return sum(arrays) / len(arrays)


class EarlyFusion(Fusion):
  """Feature-level concatenation: the modalities' mean-pooled vectors, concatenated [B, k·D], through
  an MLP → pooled [B, D]. tokens = all modalities' tokens, concatenated."""

  @nn.compact
  def __call__(self, tokens: Mapping[str, jax.Array], masks: Mapping[str, jax.Array]) -> FusionOutput:
    _, tokens, masks = self.inputs(tokens, masks)
    pooled = JointMlp(self.width, self.mlp_dim, self.dtype, self.param_dtype, name="joint_mlp")(
        jnp.concatenate(_pooled(tokens, masks), -1))
    return FusionOutput(*self.concatenated(tokens, masks), nn.with_logical_constraint(pooled, ("batch", "embed")))


class LateFusion(Fusion):
  """Decision-level: each modality's mean-pooled vector through its own head → unimodal logits, which
  `fuse` combines. pooled = the mean of the pooled vectors; tokens = all modalities' tokens, concatenated.
  A modality without valid tokens still contributes its head's logits on a zero vector."""
  decision_level = True

  def fuse(self, unimodal: dict[str, jax.Array]) -> jax.Array:
    """{modality: f32[B, C]} (sorted by name) → the fused logits f32[B, C]."""
    raise NotImplementedError

  @nn.compact
  def __call__(self, tokens: Mapping[str, jax.Array], masks: Mapping[str, jax.Array]) -> FusionOutput:
    names, tokens, masks = self.inputs(tokens, masks)
    pooled = _pooled(tokens, masks)
    unimodal = self.heads(names, pooled)
    pooled = nn.with_logical_constraint(_mean(pooled), ("batch", "embed"))
    return FusionOutput(*self.concatenated(tokens, masks), pooled, self.fuse(unimodal), unimodal)


class LateMean(LateFusion):
  """Decision-level: the mean of the modalities' heads' logits."""

  def fuse(self, unimodal: dict[str, jax.Array]) -> jax.Array:
    return _mean(list(unimodal.values()))


class LateVote(LateFusion):
  """Decision-level: the majority vote of the modalities' heads, as `vote_logits` (trainable, with its tie-break)."""

  def fuse(self, unimodal: dict[str, jax.Array]) -> jax.Array:
    return vote_logits(unimodal)


class LateLearned(LateFusion):
  """Decision-level: Σ_m softmax(w)_m · logits_m, one learned weight per modality: equal at init, where it
  is late_mean, and free to learn to trust the more informative modalities."""

  def fuse(self, unimodal: dict[str, jax.Array]) -> jax.Array:
    weights = self.param("modality_weights", logical(nn.initializers.zeros, (None,)), (len(unimodal),),
                         self.param_dtype)
    return jnp.einsum("m,mbc->bc", jax.nn.softmax(weights.astype(jnp.float32)), jnp.stack(list(unimodal.values())))


class AttentionFusion(Fusion):
  """`num_queries` learned query tokens attend over all modalities' tokens at once, each modality's
  tokens plus a learned modality-type embedding (so keys tell the modalities apart): `depth` pre-LN
  CrossAttentionBlocks, then a LayerNorm. tokens = the queries [B, num_queries, D]; pooled = their mean."""
  num_queries: int = 4

  @nn.compact
  def __call__(self, tokens: Mapping[str, jax.Array], masks: Mapping[str, jax.Array]) -> FusionOutput:
    names, tokens, masks = self.inputs(tokens, masks)
    typed = [x + self.param(f"type_embed_{name}", logical(nn.initializers.normal(0.02), ("embed",)), (self.width,),
                            self.param_dtype).astype(self.dtype) for name, x in zip(names, tokens)]
    context, context_valid = self.concatenated(typed, masks)
    queries = self.param("queries", logical(nn.initializers.normal(0.02), (None, "embed")),
                         (self.num_queries, self.width), self.param_dtype).astype(self.dtype)
    queries = jnp.broadcast_to(queries, (context.shape[0], *queries.shape))
    query_valid = jnp.ones(queries.shape[:2], bool)
    mask = mnn.attention_mask(query_valid, context_valid)
    for i in range(self.depth):
      queries = self.block(CrossAttentionBlock, f"block_{i}")(queries, context, mask)
    queries = mnn.layer_norm("ln_final", self.dtype, self.param_dtype)(queries)
    return FusionOutput(queries, query_valid, nn.with_logical_constraint(queries.mean(1), ("batch", "embed")))


class BottleneckFusion(Fusion):
  """Multimodal bottleneck Transformer (MBT, Nagrani et al. 2021).

  Each modality has its own stream of `depth` EncoderBlocks. The first `fusion_layer` are unimodal;
  from then on, each modality's block runs on [its tokens, the `num_bottlenecks` shared bottleneck
  tokens], and the bottlenecks become the mean over modalities of their updated copies: modalities
  exchange information only through these few tokens, which forces them to condense it.
  pooled = the mean over modalities of each stream's masked mean; tokens = the streams, then the
  bottlenecks (always valid). fusion_layer = depth is late fusion of the streams (no exchange).
  """
  fusion_layer: int = 0
  num_bottlenecks: int = 4

  def __post_init__(self):
    if not 0 <= self.fusion_layer <= self.depth:
      raise errors.ConfigError(f"bottleneck fusion_layer={self.fusion_layer} must be in [0, depth={self.depth}]: "
                               "it is the number of unimodal layers before the bottleneck layers.")
    super().__post_init__()

  @nn.compact
  def __call__(self, tokens: Mapping[str, jax.Array], masks: Mapping[str, jax.Array]) -> FusionOutput:
    names, streams, masks = self.inputs(tokens, masks)
    bottleneck = self.param("bottlenecks", logical(nn.initializers.normal(0.02), (None, "embed")),
                            (self.num_bottlenecks, self.width), self.param_dtype).astype(self.dtype)
    bottleneck = jnp.broadcast_to(bottleneck, (streams[0].shape[0], *bottleneck.shape))
    bottleneck_valid = jnp.ones(bottleneck.shape[:2], bool)
    for i in range(self.depth):
      updated = []
      for m, name in enumerate(names):
        block = self.block(mnn.EncoderBlock, f"{name}_block_{i}")
        if i < self.fusion_layer:
          streams[m] = block(streams[m], mnn.attention_mask(masks[m], masks[m]))
          continue
        joint, valid = self.concatenated([streams[m], bottleneck], [masks[m], bottleneck_valid])
        joint = block(joint, mnn.attention_mask(valid, valid))
        streams[m], own_bottleneck = joint[:, :streams[m].shape[1]], joint[:, streams[m].shape[1]:]
        updated.append(own_bottleneck)
      bottleneck = _mean(updated) if updated else bottleneck
    streams = [mnn.layer_norm(f"{name}_ln_final", self.dtype, self.param_dtype)(x) for name, x in zip(names, streams)]
    bottleneck = mnn.layer_norm("ln_bottleneck", self.dtype, self.param_dtype)(bottleneck)
    pooled = nn.with_logical_constraint(_mean(_pooled(streams, masks)), ("batch", "embed"))
    return FusionOutput(*self.concatenated(streams + [bottleneck], masks + [bottleneck_valid]), pooled)


class MulTFusion(Fusion):
  """Cross-modal Transformer (MulT, Tsai et al. 2019), without its positional embeddings and convolutions.

  For each target modality m and each other source s: `depth` CrossAttentionBlocks in which m's tokens
  (queries) attend to s's tokens (keys/values, s's mask). Each target concatenates its streams from all
  sources along features [B, N_m, (k-1)·D] → Dense to D → an EncoderBlock (self-attention) → LayerNorm.
  pooled = Dense of the concatenated targets' masked means [B, k·D] to D; tokens = the targets, concatenated.
  With one modality its only source is itself, so the cross-modal blocks are self-attention blocks.
  """

  @nn.compact
  def __call__(self, tokens: Mapping[str, jax.Array], masks: Mapping[str, jax.Array]) -> FusionOutput:
    names, tokens, masks = self.inputs(tokens, masks)
    targets = []
    for t, target in enumerate(names):
      streams = []
      for s, source in enumerate(names):
        if source == target and len(names) > 1:
          continue
        x, mask = tokens[t], mnn.attention_mask(masks[t], masks[s])
        for i in range(self.depth):
          x = self.block(CrossAttentionBlock, f"{target}_from_{source}_{i}")(x, tokens[s], mask)
        streams.append(x)
      x = nn.with_logical_constraint(_dense(self, self.width, (None, "embed"), f"{target}_merge")(
          jnp.concatenate(streams, -1)), TOKENS)
      x = self.block(mnn.EncoderBlock, f"{target}_self")(x, mnn.attention_mask(masks[t], masks[t]))
      targets.append(mnn.layer_norm(f"{target}_ln_final", self.dtype, self.param_dtype)(x))
    pooled = _dense(self, self.width, (None, "embed"), "pool_proj")(jnp.concatenate(_pooled(targets, masks), -1))
    return FusionOutput(*self.concatenated(targets, masks), nn.with_logical_constraint(pooled, ("batch", "embed")))


class GatedFusion(Fusion):
  """Gated multimodal unit (GMU, Arevalo et al. 2017), for k modalities: h_m = tanh(Dense_m(pooled_m)),
  gates z = softmax over modalities of Dense_m(concat of all pooled) (one gate per modality and feature,
  so each feature picks its modality from all of them), pooled = Σ_m z_m ⊙ h_m. With two modalities
  this is the paper's sigmoid gate. tokens = all modalities' tokens, concatenated (not gated)."""

  @nn.compact
  def __call__(self, tokens: Mapping[str, jax.Array], masks: Mapping[str, jax.Array]) -> FusionOutput:
    names, tokens, masks = self.inputs(tokens, masks)
    pooled = _pooled(tokens, masks)
    hidden = jnp.stack([jnp.tanh(_dense(self, self.width, (None, "embed"), f"{name}_hidden")(x))
                        for name, x in zip(names, pooled)], 1)
    joint = jnp.concatenate(pooled, -1)
    gates = jnp.stack([_dense(self, self.width, (None, "embed"), f"{name}_gate")(joint) for name in names], 1)
    gates = jax.nn.softmax(gates.astype(jnp.float32), axis=1).astype(hidden.dtype)
    fused = nn.with_logical_constraint((gates * hidden).sum(1), ("batch", "embed"))
    return FusionOutput(*self.concatenated(tokens, masks), fused)


class HybridFusion(Fusion):
  """Early + late: an `early` fusion's pooled vector through its own head, and each modality's head on its
  mean-pooled vector; logits = the mean of the early head's logits and the mean of the unimodal ones.
  pooled = the early pooled vector; tokens = all modalities' tokens, concatenated."""
  decision_level = True

  @nn.compact
  def __call__(self, tokens: Mapping[str, jax.Array], masks: Mapping[str, jax.Array]) -> FusionOutput:
    names, tokens, masks = self.inputs(tokens, masks)
    pooled = _pooled(tokens, masks)
    fused = nn.with_logical_constraint(JointMlp(self.width, self.mlp_dim, self.dtype, self.param_dtype,
                                                name="joint_mlp")(jnp.concatenate(pooled, -1)), ("batch", "embed"))
    early = ClassifierHead(self.mlp_dim, self.num_classes, self.dtype, self.param_dtype, name="joint_head")(fused)
    unimodal = self.heads(names, pooled)
    logits = (early + _mean(list(unimodal.values()))) / 2
    return FusionOutput(*self.concatenated(tokens, masks), fused, logits, unimodal)


FUSIONS: dict[str, type[Fusion]] = {
    "early": EarlyFusion,
    "late_mean": LateMean,
    "late_vote": LateVote,
    "late_learned": LateLearned,
    "cross_attention": AttentionFusion,
    "bottleneck": BottleneckFusion,
    "mult": MulTFusion,
    "gated": GatedFusion,
    "hybrid": HybridFusion,
}
DECISION_LEVEL = tuple(name for name, cls in FUSIONS.items() if cls.decision_level)


def build_fusion(name: str, **kwargs: Any) -> Fusion:
  """FUSIONS[name](**kwargs), e.g. build_fusion("bottleneck", width=128, mlp_dim=512, depth=4, fusion_layer=2)."""
  if name not in FUSIONS:
    raise errors.ConfigError(f"Unknown fusion {name!r}; known fusions: {sorted(FUSIONS)}.")
  return FUSIONS[name](**kwargs)
