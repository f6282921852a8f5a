"""Attention you can look at: what a generated word, a fused token or a ViT's class token attends to.

Every Transformer attention in mmjax (encoders, fusions, the Transformer decoder) runs through
`mmjax.nn.MultiHeadAttention.attend`, which sows its softmax weights f32[B, H, Q, K] as
intermediates["attention_weights"]. Flax keeps them only when a model is applied with
mutable=["intermediates"] (`attention_weights` here), so training and decoding compute exactly what they
would without it. Where they are, as module paths of a Captioner or Classifier (i = the layer):

  <modality>_encoder/encoder/block_{i}/attn   the ViT's (text, audio encoders') self-attention
  fuse/encoder/block_{i}/attn                 `concat` fusion: joint self-attention over the modalities' tokens
  fuse/block_{i}/attn                         `cross_attention` fusion: its learned queries over the modalities
  fuse/<modality>_block_{i}/attn              `bottleneck` fusion: a stream with the bottleneck tokens
  fuse/<target>_from_<source>_{i}/attn, fuse/<target>_self/attn   `mult` fusion
  text_decoder/blocks_{i}/self_attn           the decoder's causal self-attention
  text_decoder/blocks_{i}/cross_attn          the decoder's cross-attention over the fused tokens

Fusions that concatenate (concat, bottleneck, mult) keep one fused token per input token, modalities in sorted
name order (bottleneck's shared tokens last), so a decoder's attention over them maps back to image patches.
"""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from mmjax import errors
from mmjax.models.encoders.vit import ViT
from mmjax.tasks.generation import GenerationTask

_SOWN = "attention_weights"
DECODER_CROSS_ATTENTION = "text_decoder/blocks_{}/cross_attn"
# The LSTM decoder attends once per position, from the decoder module itself.
LSTM_DECODER_ATTENTION = "text_decoder"
VIT_SELF_ATTENTION = "image_encoder/encoder/block_{}/attn"


def attention_weights(model: nn.Module, params: Any, method: str | Callable | None,
                      *args: Any) -> tuple[Any, dict[str, jax.Array]]:
  """(output, {module path: f32[B, H, Q, K]}): `model.apply(params, *args, method=method)` (method None:
  `__call__`) and the weights of every attention that ran in it, e.g. at "text_decoder/blocks_0/cross_attn" (see
  the module docstring). The output comes along because one pass gives both. A module that ran several times
  in the call gives its weights stacked, [calls, B, H, Q, K]. Pure: jit it with the model closed over."""
  output, state = model.apply({"params": params}, *args, method=method, mutable=["intermediates"])
  weights = {}
  for path, calls in traverse_util.flatten_dict(state.get("intermediates", {}), sep="/").items():
    if path.endswith("/" + _SOWN):
      weights[path[:-len(_SOWN) - 1]] = calls[0] if len(calls) == 1 else jnp.stack(calls)
  return output, weights


def layer_stack(weights: Mapping[str, jax.Array], pattern: str) -> list[jax.Array]:
  """The weights of layers 0, 1, … at `pattern` (a path with {} for the layer, e.g. VIT_SELF_ATTENTION)."""
  layers = []
  while pattern.format(len(layers)) in weights:
    layers.append(weights[pattern.format(len(layers))])
  if not layers:
    raise errors.InputError(f"No attention weights at {pattern.format(0)!r}; the model's attention modules are: "
                            f"{sorted(weights)}.")
  return layers


def rollout(layer_weights: Sequence[jax.Array]) -> np.ndarray:
  """Attention rollout (Abnar & Zuidema 2020) of self-attention layers, each f32[B, H, N, N] → f32[B, N, N]:
  how much each output token draws on each input token through every layer. Each layer's heads are averaged
  and the residual connection counted as attention to itself (½·A + ½·I, rows still summing to 1); the layers
  then compose by matrix product, A_L ··· A_1. Raw attention of a late layer alone ignores that tokens have
  already mixed in the layers below."""
  joint = None
  for weights in layer_weights:
    layer = np.asarray(weights, np.float64).mean(1)
    layer = 0.5 * layer + 0.5 * np.eye(layer.shape[-1])
    joint = layer if joint is None else layer @ joint
  if joint is None:
    raise errors.InputError("attention rollout needs at least one layer's weights.")
  return joint.astype(np.float32)


def attention_rollout(layer_weights: Sequence[jax.Array], grid: tuple[int, int]) -> np.ndarray:
  """A ViT's class-token relevance of each patch, f32[B, gh, gw]: row 0 (the CLS token, first) of the `rollout`
  of its layers (VIT_SELF_ATTENTION), over the gh·gw patches in raster order. The values are the CLS output's
  shares of each patch (the rest is its own), not renormalised."""
  joint = rollout(layer_weights)
  if joint.shape[-1] != 1 + grid[0] * grid[1]:
    raise errors.InputError(f"A rollout over {joint.shape[-1]} tokens is not a CLS token and a {grid[0]}x{grid[1]} "
                            "grid of patches: give the ViT's grid, and a ViT with pool='cls'.")
  return joint[:, 0, 1:].reshape(-1, *grid)


def modality_attention_share(weights: jax.Array, modality_lengths: Mapping[str, int]) -> dict[str, np.ndarray]:
  """{modality: f32[..., Q]}: the fraction of each query's attention mass on each modality's keys, for
  attention f32[..., Q, K] over the concatenation of the modalities' tokens, `modality_lengths` giving their
  lengths in that order (e.g. {"image": 10, "text": 14}: how much a VQA decoder reads the image vs the
  question). Masked keys hold no mass, so padding counts for nothing."""
  weights = np.asarray(weights, np.float32)
  if sum(modality_lengths.values()) != weights.shape[-1]:
    raise errors.InputError(f"modality lengths {dict(modality_lengths)} add up to {sum(modality_lengths.values())}, "
                            f"not the {weights.shape[-1]} keys the attention has.")
  bounds = np.cumsum([0, *modality_lengths.values()])
  return {name: weights[..., start:end].sum(-1) for name, start, end in zip(modality_lengths, bounds, bounds[1:])}


@dataclasses.dataclass(frozen=True)
class CaptionAttention:
  """The decoder's cross-attention while it generated each token (see `caption_attention`).

  tokens: int[B, T], the generated tokens (eos included, 0 after it);
  layers: f32[B, L, T, N], decoder layer l's attention (mean of its heads) over the N fused tokens when it
  generated token t; mean: f32[B, T, N], their mean over layers; rows sum to 1 wherever token t was generated;
  segments: the parts of the fused tokens in order, {name: length} (modalities, or the fusion's own tokens);
  grid: the image's (gh, gw) patch grid and patches: f32[B, T, gh, gw] (`mean` on each image patch, the CLS
  token left out), when the fused tokens include one per ViT patch; else None.
  """
  tokens: np.ndarray
  layers: np.ndarray
  mean: np.ndarray
  segments: dict[str, int]
  grid: tuple[int, int] | None
  patches: np.ndarray | None

  def shares(self) -> dict[str, np.ndarray]:
    """{segment: f32[B, T]}: each generated token's attention mass on each part of the fused tokens."""
    return modality_attention_share(self.mean, self.segments)


def fused_segments(model: nn.Module, params: Any, inputs: Mapping[str, jax.Array]) -> dict[str, int]:
  """{part: length} of a Captioner's (or Classifier's) fused tokens, in order: each modality's tokens (sorted by
  name) for concat and mult, then the shared tokens for bottleneck; the learned queries for cross_attention."""
  fusion = model.bind({"params": params}).fuse
  if model.fusion == "cross_attention":
    return {"queries": fusion.num_queries}

  def lengths(module, inputs):
    return {m: getattr(module, f"{m}_encoder")(inputs[m])[1]["mask"] for m in module.modalities}
  masks = jax.eval_shape(functools.partial(model.apply, method=lengths), {"params": params}, dict(inputs))
  segments = {m: masks[m].shape[1] for m in sorted(masks)}
  if model.fusion == "bottleneck":
    segments["bottlenecks"] = fusion.num_bottlenecks
  return segments


def image_patch_grid(model: nn.Module, params: Any, image: jax.Array) -> tuple[tuple[int, int], int] | None:
  """((gh, gw), CLS tokens before the patches) of a model's ViT image encoder on `image` [B, H, W, C]; None if
  its image encoder is not a ViT (its tokens are then not patches)."""
  encoder = getattr(model.bind({"params": params}), "image_encoder", None)
  if not isinstance(encoder, ViT):
    return None
  patch = encoder.dims()["patch_size"]
  return (image.shape[1] // patch, image.shape[2] // patch), int(encoder.pool == "cls")


@functools.partial(jax.jit, static_argnums=0)
def _generate_and_attend(task: GenerationTask, params: Any, batch: dict[str, jax.Array]):
  tokens = task.predict_fns()["generate"](params, batch)
  decoder_input = task.decoder_input(batch, tokens)
  _, weights = attention_weights(task.model, params, None, task.inputs(batch), decoder_input)
  layers = ([weights[LSTM_DECODER_ATTENTION]] if LSTM_DECODER_ATTENTION in weights
            else layer_stack(weights, DECODER_CROSS_ATTENTION))
  first = decoder_input.shape[1] - tokens.shape[1]  # After a prompt, where the task has one.
  return tokens, jnp.stack([w.mean(1)[:, first:] for w in layers], 1)


def caption_attention(task: GenerationTask, params: Any, batch: Mapping[str, Any]) -> CaptionAttention:
  """Decodes `batch` as the task's evaluation does (config.decode: greedy by default), then feeds the generated
  tokens back by teacher forcing to read the decoder's cross-attention (DECODER_CROSS_ATTENTION, or the LSTM
  decoder's one attention per position: a single "layer" with one head) at each
  position: the numbers the cached decoding steps attend with (tests/test_interpret.py), without sowing inside
  the decoding loop. Position t's query is the token before y_t, so its map is what the decoder looked at to choose
  y_t. `batch` has the task's fields (its target only sets the length). Call it in the run's context
  (`run.context()`) when params are sharded on a mesh."""
  batch = {key: batch[key] for key in task.batch_keys}
  tokens, layers = jax.device_get(_generate_and_attend(task, params, batch))
  mean = layers.mean(1)
  inputs = task.inputs(batch)
  segments = fused_segments(task.model, params, inputs)
  if sum(segments.values()) != mean.shape[-1]:
    raise errors.InputError(f"The decoder attends to {mean.shape[-1]} fused tokens, not the {segments} that "
                            f"mmjax.interpret.fused_segments expects of fusion {task.model.fusion!r}: teach it the "
                            "fusion's layout.")
  found = image_patch_grid(task.model, params, inputs["image"]) if "image" in segments else None
  grid = patches = None
  if found:
    grid, cls = found
    offsets = dict(zip(segments, np.cumsum([0, *segments.values()])))
    if segments["image"] != cls + grid[0] * grid[1]:
      raise errors.InputError(f"The image encoder gives {segments['image']} tokens, not the {cls} CLS + "
                              f"{grid[0]}x{grid[1]} patch tokens of a ViT on {list(inputs['image'].shape)} images.")
    start = offsets["image"] + cls
    patches = mean[..., start:start + grid[0] * grid[1]].reshape(*mean.shape[:-1], *grid)
  return CaptionAttention(tokens=tokens, layers=layers, mean=mean, segments=segments, grid=grid, patches=patches)
