"""What every fusion shares: its output, its fields and input checks, and the cross-attention block."""
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from mmjax import errors
from mmjax import nn as mnn

Dtype = Any
TOKENS = ("batch", "length", "embed")


@flax.struct.dataclass
class FusionOutput:
  """What every fusion returns.

  pooled: [B, D], the fused vector a classifier head reads;
  tokens: [B, N, D] and mask: bool[B, N], the fused sequence a decoder cross-attends to, from the fusions
  that produce one (`Fusion.yields_tokens`), else None;
  logits: f32[B, num_classes] from decision-level fusions, else None;
  unimodal_logits: {modality: f32[B, num_classes]} from fusions with per-modality heads (for
  per-modality auxiliary losses), else None.
  tokens and pooled are in the compute `dtype`, as encoders' outputs are; logits always float32.
  """
  pooled: jax.Array
  tokens: jax.Array | None = None
  mask: jax.Array | None = None
  logits: jax.Array | None = None
  unimodal_logits: dict[str, jax.Array] | None = None


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
    norm = lambda name: mnn.layer_norm(name, self.dtype, self.param_dtype)
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
  remat: str = "none"  # A policy of mmjax.nn.REMAT_POLICIES, for every Transformer block.

  # Class attributes, not fields (no annotation): whether the output has `logits`, and whether it has
  # fused `tokens` (what a decoder cross-attends to).
  decision_level = False
  yields_tokens = False

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
    return mnn.rematerialized(cls, self.remat)(self.num_heads, self.mlp_dim, self.dtype, self.param_dtype, name=name)

  def dense(self, features: int, axes: tuple[str | None, str | None], name: str) -> nn.Dense:
    return mnn.dense(features, axes, self.dtype, self.param_dtype, name)

  def type_embedded(self, names: list[str], tokens: list[jax.Array]) -> list[jax.Array]:
    """Each modality's tokens plus its own learned type embedding, so attention over several modalities'
    tokens at once can tell them apart (as ViLT's modality-type embeddings)."""
    return [x + self.param(f"type_embed_{name}", mnn.logical(nn.initializers.normal(0.02), ("embed",)),
                           (self.width,), self.param_dtype).astype(self.dtype) for name, x in zip(names, tokens)]

  def heads(self, names: list[str], pooled: list[jax.Array]) -> dict[str, jax.Array]:
    """Each modality's pooled [B, D] through its own ClassifierHead → {name: f32[B, num_classes]}."""
    return {name: mnn.ClassifierHead(self.mlp_dim, self.num_classes, self.dtype, self.param_dtype,
                                     name=f"head_{name}")(vector) for name, vector in zip(names, pooled)}


def concatenated(tokens: list[jax.Array], masks: list[jax.Array]) -> tuple[jax.Array, jax.Array]:
  """[B, N_m, D] and bool[B, N_m] per modality → [B, ΣN_m, D] and bool[B, ΣN_m]."""
  return nn.with_logical_constraint(jnp.concatenate(tokens, 1), TOKENS), jnp.concatenate(masks, 1)


def pooled_means(tokens: list[jax.Array], masks: list[jax.Array]) -> list[jax.Array]:
  """Each modality's masked mean [B, D]."""
  return [mnn.pool_tokens(t, m, "mean") for t, m in zip(tokens, masks)]


def mean(arrays: list[jax.Array]) -> jax.Array:
  return sum(arrays) / len(arrays)


def pooled_vector(x: jax.Array) -> jax.Array:
  return nn.with_logical_constraint(x, ("batch", "embed"))
