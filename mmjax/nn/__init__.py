"""Neural-network layers shared by every model: the only place these live."""
from mmjax.nn.attention import HeadMerge, HeadProjection, MultiHeadAttention, attention_mask, causal_mask
from mmjax.nn.embeddings import PatchEmbed, PositionEmbed, TokenEmbed, sincos_2d
from mmjax.nn.mlp import MlpBlock
from mmjax.nn.pooling import POOLINGS, pool_tokens
from mmjax.nn.transformer import DecoderBlock, Encoder, EncoderBlock, layer_norm

__all__ = [
    "HeadMerge", "HeadProjection", "MultiHeadAttention", "attention_mask", "causal_mask",
    "PatchEmbed", "PositionEmbed", "TokenEmbed", "sincos_2d", "MlpBlock", "POOLINGS", "pool_tokens",
    "DecoderBlock", "Encoder", "EncoderBlock", "layer_norm",
]
