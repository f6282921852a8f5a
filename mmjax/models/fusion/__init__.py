"""The fusion zoo: every way of combining per-modality token sequences, behind one interface.

A fusion is called as `fusion(tokens, masks) -> FusionOutput`, where `tokens` maps modality names
("image", "audio", "text", ...) to f32[B, N_m, width] (already projected to the fusion's width) and
`masks` maps the same names to bool[B, N_m] (True = a valid token; a row may be entirely False, e.g.
a modality zeroed out in an ablation). Modalities are processed in sorted name order, so the result
does not depend on the dict's order, and parameters are named after the modalities.

No fusion adds positional information: each expects its inputs to carry their own, so permuting the
valid tokens of one modality leaves `pooled` and `logits` unchanged (and permutes the fused tokens
that come from them; `cross_attention`'s fused tokens are its queries, which are unchanged).

Token-level fusions (`TOKEN_LEVEL`, mmjax.models.fusion.token) also return fused tokens, which a
decoder cross-attends to; the others (mmjax.models.fusion.vector) return a pooled vector only.
Decision-level fusions (`DECISION_LEVEL`) produce class scores themselves (`logits`), which a
classifier uses instead of a head on `pooled`; they need `num_classes`, which the others ignore.
`depth` counts the layers of the layered fusions (concat, cross_attention, bottleneck, mult) and of the
relation fusion's pair MLP; the others have none.
"""
from typing import Any

from mmjax import errors
from mmjax.models.fusion.base import CrossAttentionBlock, Fusion, FusionOutput
from mmjax.models.fusion.relation import RelationFusion
from mmjax.models.fusion.token import AttentionFusion, BottleneckFusion, ConcatFusion, MulTFusion
from mmjax.models.fusion.vector import (
    EarlyFusion, GatedFusion, HybridFusion, JointMlp, LateLearned, LateMean, LateVote, WeightedMeanFusion, vote_logits)

FUSIONS: dict[str, type[Fusion]] = {
    "concat": ConcatFusion,
    "early": EarlyFusion,
    "weighted_mean": WeightedMeanFusion,
    "late_mean": LateMean,
    "late_vote": LateVote,
    "late_learned": LateLearned,
    "cross_attention": AttentionFusion,
    "bottleneck": BottleneckFusion,
    "mult": MulTFusion,
    "gated": GatedFusion,
    "hybrid": HybridFusion,
    "relation": RelationFusion,
}
DECISION_LEVEL = tuple(name for name, cls in FUSIONS.items() if cls.decision_level)
TOKEN_LEVEL = tuple(name for name, cls in FUSIONS.items() if cls.yields_tokens)


def build_fusion(name: str, **kwargs: Any) -> Fusion:
  """FUSIONS[name](**kwargs), e.g. build_fusion("bottleneck", width=128, mlp_dim=512, depth=4, fusion_layer=2)."""
  return errors.lookup(FUSIONS, name, "fusion", "config.model.fusion")(**kwargs)


def check_yields_tokens(name: str) -> None:
  """A ConfigError unless fusion `name` yields fused tokens, which a text decoder cross-attends to."""
  if not errors.lookup(FUSIONS, name, "fusion", "config.model.fusion").yields_tokens:
    raise errors.ConfigError(
        f"config.model.fusion={name!r} yields no fused tokens (only a pooled vector or class scores), and a "
        f"decoder cross-attends to fused tokens: use one of {sorted(TOKEN_LEVEL)}.")


__all__ = ["DECISION_LEVEL", "FUSIONS", "TOKEN_LEVEL", "AttentionFusion", "BottleneckFusion", "ConcatFusion",
           "CrossAttentionBlock", "EarlyFusion", "Fusion", "FusionOutput", "GatedFusion", "HybridFusion", "JointMlp",
           "LateLearned", "LateMean", "LateVote", "MulTFusion", "RelationFusion", "WeightedMeanFusion", "build_fusion",
           "check_yields_tokens", "vote_logits"]
