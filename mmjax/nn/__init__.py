"""Neural-network layers shared by every model: the only place these live."""
from mmjax.nn.attention import HeadMerge, HeadProjection, MultiHeadAttention, attention_mask, causal_mask
from mmjax.nn.embeddings import PatchEmbed, PositionEmbed, TokenEmbed, sincos_2d
from mmjax.nn.mlp import ACTIVATIONS, ClassifierHead, MlpBlock
from mmjax.nn.partitioning import DEFAULT_KERNEL_INIT, dense, logical
from mmjax.nn.pooling import POOLINGS, pool_tokens
from mmjax.nn.transformer import (NORM_POSITIONS, REMAT_POLICIES, DecoderBlock, Encoder, EncoderBlock, layer_norm,
                                  rematerialized)

__all__ = [
    "HeadMerge", "HeadProjection", "MultiHeadAttention", "attention_mask", "causal_mask",
    "PatchEmbed", "PositionEmbed", "TokenEmbed", "sincos_2d", "ACTIVATIONS", "ClassifierHead", "MlpBlock",
    "DEFAULT_KERNEL_INIT", "dense", "logical", "POOLINGS", "pool_tokens",
    "NORM_POSITIONS", "REMAT_POLICIES", "DecoderBlock", "Encoder", "EncoderBlock", "layer_norm", "rematerialized",
]
