"""Fusions that yield fused token sequences (what a decoder cross-attends to) as well as a pooled vector."""
from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax import errors
from mmjax import nn as mnn
from mmjax.models.fusion.base import (
    TOKENS, CrossAttentionBlock, Fusion, FusionOutput, concatenated, mean, pooled_means, pooled_vector)


class ConcatFusion(Fusion):
  """Joint self-attention over all modalities' tokens, concatenated (single-stream fusion, as in ViLT and
  the VQA fusion encoders of ALBEF/BLIP): each modality's tokens plus a learned modality-type embedding,
  concatenated [B, ΣN_m, D], then `depth` pre-LN EncoderBlocks in which every token attends to every valid
  token of every modality, and a LayerNorm. A question such as "is the red circle left of the blue
  square?" needs image tokens that know which objects the question names. tokens = the fused sequence
  (padding masked). pooled = its masked mean (`pool="mean"`), or one modality's fused tokens pooled
  (`pool="<modality>:<pooling>"`, e.g. "text:last"): ViLT and ALBEF answer from the text's [CLS] token after
  fusion, a token that knows the whole question and attends to the image in the first fused layer already.
  `depth=0` only concatenates (the typed tokens): a decoder's cross-attention then does all the fusing, as
  in a plain captioner.
  """
  yields_tokens = True
  pool: str = "mean"

  def pooled(self, names: list[str], masks: list[jax.Array], fused: jax.Array, valid: jax.Array) -> jax.Array:
    if self.pool == "mean":
      return mnn.pool_tokens(fused, valid, "mean")
    modality, _, kind = self.pool.partition(":")
    if modality not in names or kind not in mnn.POOLINGS:
      raise errors.ConfigError(f"concat fusion pool={self.pool!r}: use 'mean' or '<modality>:<pooling>' with a "
                               f"modality of {names} and a pooling of {sorted(mnn.POOLINGS)}, e.g. 'text:last'.")
    index = names.index(modality)  # Fused in the order of `names`.
    start = sum(mask.shape[1] for mask in masks[:index])
    end = start + masks[index].shape[1]
    return mnn.pool_tokens(fused[:, start:end], valid[:, start:end], kind)

  @nn.compact
  def __call__(self, tokens: Mapping[str, jax.Array], masks: Mapping[str, jax.Array]) -> FusionOutput:
    names, tokens, masks = self.inputs(tokens, masks)
    fused, valid = concatenated(self.type_embedded(names, tokens), masks)
    if self.depth:
      fused = mnn.Encoder(self.depth, self.num_heads, self.mlp_dim, self.dtype, self.param_dtype, self.remat,
                          name="encoder")(fused, mnn.attention_mask(valid, valid))
    pooled = self.pooled(names, masks, fused, valid)
    return FusionOutput(pooled=pooled_vector(pooled), tokens=fused, mask=valid)


class AttentionFusion(Fusion):
  """`num_queries` learned query tokens attend over all modalities' tokens at once, each modality's
  tokens plus a learned modality-type embedding (so keys tell the modalities apart): `depth` pre-LN
  CrossAttentionBlocks, then a LayerNorm. tokens = the queries [B, num_queries, D]; pooled = their mean."""
  yields_tokens = True
  num_queries: int = 4

  @nn.compact
  def __call__(self, tokens: Mapping[str, jax.Array], masks: Mapping[str, jax.Array]) -> FusionOutput:
    names, tokens, masks = self.inputs(tokens, masks)
    context, context_valid = concatenated(self.type_embedded(names, tokens), masks)
    queries = self.param("queries", mnn.logical(nn.initializers.normal(0.02), (None, "embed")),
                         (self.num_queries, self.width), self.param_dtype).astype(self.dtype)
    queries = jnp.broadcast_to(queries, (context.shape[0], *queries.shape))
    query_valid = jnp.ones(queries.shape[:2], bool)
    mask = mnn.attention_mask(query_valid, context_valid)
    for i in range(self.depth):
      queries = self.block(CrossAttentionBlock, f"block_{i}")(queries, context, mask)
    queries = mnn.layer_norm("ln_final", self.dtype, self.param_dtype)(queries)
    return FusionOutput(pooled=pooled_vector(queries.mean(1)), tokens=queries, mask=query_valid)


class BottleneckFusion(Fusion):
  """Multimodal bottleneck Transformer (MBT, Nagrani et al. 2021).

  Each modality has its own stream of `depth` EncoderBlocks. The first `fusion_layer` are unimodal;
  from then on, each modality's block runs on [its tokens, the `num_bottlenecks` shared bottleneck
  tokens], and the bottlenecks become the mean over modalities of their updated copies: modalities
  exchange information only through these few tokens, which forces them to condense it.
  pooled = the mean over modalities of each stream's masked mean; tokens = the streams, then the
  bottlenecks (always valid). fusion_layer = depth is late fusion of the streams (no exchange).
  """
  yields_tokens = True
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
    bottleneck = self.param("bottlenecks", mnn.logical(nn.initializers.normal(0.02), (None, "embed")),
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
        joint, valid = concatenated([streams[m], bottleneck], [masks[m], bottleneck_valid])
        joint = block(joint, mnn.attention_mask(valid, valid))
        streams[m], own_bottleneck = joint[:, :streams[m].shape[1]], joint[:, streams[m].shape[1]:]
        updated.append(own_bottleneck)
      bottleneck = mean(updated) if updated else bottleneck
    streams = [mnn.layer_norm(f"{name}_ln_final", self.dtype, self.param_dtype)(x) for name, x in zip(names, streams)]
    bottleneck = mnn.layer_norm("ln_bottleneck", self.dtype, self.param_dtype)(bottleneck)
    fused, fused_valid = concatenated(streams + [bottleneck], masks + [bottleneck_valid])
    return FusionOutput(pooled=pooled_vector(mean(pooled_means(streams, masks))), tokens=fused, mask=fused_valid)


class MulTFusion(Fusion):
  """Cross-modal Transformer (MulT, Tsai et al. 2019), without its positional embeddings and convolutions.

  For each target modality m and each other source s: `depth` CrossAttentionBlocks in which m's tokens
  (queries) attend to s's tokens (keys/values, s's mask). Each target concatenates its streams from all
  sources along features [B, N_m, (k-1)·D] → Dense to D → an EncoderBlock (self-attention) → LayerNorm.
  pooled = Dense of the concatenated targets' masked means [B, k·D] to D; tokens = the targets, concatenated.
  With one modality its only source is itself, so the cross-modal blocks are self-attention blocks.
  """
  yields_tokens = True

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
      x = nn.with_logical_constraint(self.dense(self.width, (None, "embed"), f"{target}_merge")(
          jnp.concatenate(streams, -1)), TOKENS)
      x = self.block(mnn.EncoderBlock, f"{target}_self")(x, mnn.attention_mask(masks[t], masks[t]))
      targets.append(mnn.layer_norm(f"{target}_ln_final", self.dtype, self.param_dtype)(x))
    pooled = self.dense(self.width, (None, "embed"), "pool_proj")(jnp.concatenate(pooled_means(targets, masks), -1))
    fused, fused_valid = concatenated(targets, masks)
    return FusionOutput(pooled=pooled_vector(pooled), tokens=fused, mask=fused_valid)
