"""Attention maps (mmjax.interpret): sowing the weights changes nothing, rollout and modality shares match hand-made
cases, and a captioner's per-token maps are the ones its cached decoding steps attend with."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import common
from mmjax import errors, interpret
from mmjax.models import Captioner
from mmjax.tasks import GenerationTask

VOCAB, BOS, EOS = 24, 1, 2
IMAGE = dict(name="vit", variant="Nano/16", width=32, num_heads=2, pool="cls", posemb="sincos2d")
TEXT = dict(name="transformer", vocab_size=VOCAB, width=32, depth=1, num_heads=2, mlp_dim=64, max_len=6)
FUSED = dict(width=32, fusion_depth=1, num_heads=2, mlp_dim=64, decoder=dict(vocab_size=VOCAB, depth=2, num_heads=2,
                                                                             mlp_dim=64, max_len=5))
rng = np.random.default_rng(0)
IMAGES = jnp.asarray(rng.uniform(-1, 1, (2, 48, 48, 3)), jnp.float32)  # 3x3 patches of 16 and a CLS token.
QUESTIONS = jnp.array([[9, 10, 3, 0, 0, 0], [11, 3, 0, 0, 0, 0]])


def _task(model: Captioner) -> GenerationTask:
  inputs = {"image": "image", "text": "question"} if "text" in model.encoders else {"image": "image"}
  return GenerationTask(ml_collections.ConfigDict(dict(inputs=inputs, target="text")), model,
                        decode_config=common.decode(), bos_id=BOS, eos_id=EOS, vocab_size=VOCAB)


def _init(model: Captioner, inputs: dict) -> dict:
  return jax.jit(model.init)(jax.random.PRNGKey(0), inputs, jnp.zeros((2, 5), jnp.int32))["params"]


def test_sowing_leaves_outputs_bit_identical_and_reaches_every_attention_through_remat():
  """Applied with mutable=["intermediates"], a model (remat on every block) gives the same bits and the weights
  of every attention: both encoders, every fusion stream, and the decoder's self- and cross-attention."""
  model = Captioner(encoders={"image": IMAGE, "text": TEXT}, fusion="bottleneck", remat="full", **FUSED)
  inputs = {"image": IMAGES, "text": QUESTIONS}
  params = _init(model, inputs)
  decoder_input = jnp.array([[BOS, 5, 6, 7, 0], [BOS, 8, 0, 0, 0]])
  plain = jax.jit(lambda p: model.apply({"params": p}, inputs, decoder_input))(params)
  sown, weights = jax.device_get(jax.jit(
      lambda p: interpret.attention_weights(model, p, None, inputs, decoder_input))(params))
  np.testing.assert_array_equal(plain, sown)
  assert sorted(weights) == [
      "fuse/image_block_0/attn", "fuse/text_block_0/attn", "image_encoder/encoder/block_0/attn",
      "image_encoder/encoder/block_1/attn", "text_decoder/blocks_0/cross_attn", "text_decoder/blocks_0/self_attn",
      "text_decoder/blocks_1/cross_attn", "text_decoder/blocks_1/self_attn", "text_encoder/encoder/block_0/attn"]
  # The fused tokens: the image stream (CLS + 9 patches), the question stream, then the 4 bottleneck tokens.
  segments = interpret.fused_segments(model, params, inputs)
  assert segments == {"image": 10, "text": 6, "bottlenecks": 4}
  cross = weights["text_decoder/blocks_0/cross_attn"]
  assert cross.shape == (2, 2, 5, 20) and cross.dtype == np.float32
  np.testing.assert_allclose(cross.sum(-1), 1.0, atol=1e-6)
  np.testing.assert_allclose(sum(interpret.modality_attention_share(cross, segments).values()), 1.0, atol=1e-6)
  np.testing.assert_array_equal(cross[1, ..., 10 + 2:16], 0.0)  # The second question's padding (2 valid tokens).


def test_rollout_of_identity_attention_is_the_identity_and_of_uniform_attention_a_known_mixture():
  identity = np.broadcast_to(np.eye(5), (1, 3, 5, 5))
  np.testing.assert_allclose(interpret.rollout([identity] * 3), np.eye(5)[None], atol=1e-7)
  np.testing.assert_allclose(interpret.attention_rollout([identity] * 3, (2, 2)), np.zeros((1, 2, 2)))
  # Uniform attention U (every entry 1/5): each layer is U/2 + I/2, and two layers give 3U/4 + I/4.
  uniform = np.full((1, 2, 5, 5), 0.2)
  np.testing.assert_allclose(interpret.rollout([uniform, uniform]), 0.15 + 0.25 * np.eye(5)[None], atol=1e-7)
  np.testing.assert_allclose(interpret.attention_rollout([uniform, uniform], (2, 2)), np.full((1, 2, 2), 0.15),
                             atol=1e-7)
  with pytest.raises(errors.InputError, match="not a CLS token and a 3x3 grid"):
    interpret.attention_rollout([uniform], (3, 3))


def test_rollout_averages_heads_adds_the_residual_and_composes_later_layers_on_the_left():
  # Layer 1: one head attends all to token 0, the other is the identity: mean [[1, 0], [.5, .5]], plus the
  # residual → A1 = [[1, 0], [.25, .75]]. Layer 2: every query to token 1 → A2 = [[.5, .5], [0, 1]].
  layer1 = np.array([[[[1.0, 0.0], [1.0, 0.0]], [[1.0, 0.0], [0.0, 1.0]]]])
  layer2 = np.array([[[[0.0, 1.0], [0.0, 1.0]]]])
  # A2 @ A1 (by hand): [[.5 + .125, .375], [.25, .75]]; the other order, A1 @ A2, would be [[.5, .5], [.125, .875]].
  np.testing.assert_allclose(interpret.rollout([layer1, layer2]), [[[0.625, 0.375], [0.25, 0.75]]], atol=1e-7)


def test_modality_share_splits_each_querys_mass_by_the_keys_modality():
  weights = np.array([[[0.1, 0.2, 0.3, 0.4, 0.0], [0.0, 0.0, 0.5, 0.25, 0.25]]])  # [1, Q=2, K=5]
  shares = interpret.modality_attention_share(weights, {"image": 3, "text": 2})
  np.testing.assert_allclose(shares["image"], [[0.6, 0.5]])
  np.testing.assert_allclose(shares["text"], [[0.4, 0.5]])
  with pytest.raises(errors.InputError, match=r"add up to 4, not the 5 keys"):
    interpret.modality_attention_share(weights, {"image": 3, "text": 1})


def test_caption_attention_gives_per_token_patch_maps_equal_to_the_cached_decoding_steps():
  """An untrained image captioner (concat of depth 0: the decoder reads CLS + 9 patch tokens): one map per
  generated token over the 3x3 patches, rows summing to 1 with the CLS token's share; teacher forcing the
  generated tokens gives the maps the cached decoding steps attend with, step by step."""
  model = Captioner(encoders={"image": IMAGE}, fusion="concat", **{**FUSED, "fusion_depth": 0})
  task = _task(model)
  params = _init(model, {"image": IMAGES})
  batch = {"image": IMAGES, "text": jnp.zeros((2, 5), jnp.int32)}
  result = interpret.caption_attention(task, params, batch)
  assert result.segments == {"image": 10} and result.grid == (3, 3)
  assert result.layers.shape == (2, 2, 5, 10) and result.patches.shape == (2, 5, 3, 3)
  np.testing.assert_allclose(result.mean.sum(-1), 1.0, atol=1e-6)
  np.testing.assert_allclose(result.patches.sum((-2, -1)) + result.mean[..., 0], 1.0, atol=1e-6)
  np.testing.assert_allclose(result.shares()["image"], 1.0, atol=1e-6)

  variables = {"params": params}
  state = jax.jit(lambda: model.apply(variables, *model.apply(variables, {"image": IMAGES},
                                                              method=model.encode_tokens),
                                      5, method=model.init_decode_state))()
  step = jax.jit(lambda tokens, index, state: model.apply(variables, tokens, index, state,
                                                          method=model.decode_step, mutable=["intermediates"]))
  decoder_input = np.concatenate([np.full((2, 1), BOS), result.tokens[:, :-1]], 1)
  for index in range(5):
    (_, state), sown = step(decoder_input[:, index], index, state)
    for layer, block in enumerate(sown["intermediates"]["text_decoder"].values()):
      cached = np.asarray(block["cross_attn"]["attention_weights"][0])  # [B, H, 1, N]
      np.testing.assert_allclose(cached.mean(1)[:, 0], result.layers[:, layer, index], atol=1e-6)


def test_caption_attention_after_a_prompt_maps_the_answer_tokens_only():
  """Prefix-LM VQA (the question is the decoder's prompt): one map per generated answer token, equal to what the
  cached decoding steps attend with once the prompt is prefilled (positions 6, 7, 8 after a 6-token prompt)."""
  decoder = {**FUSED["decoder"], "max_len": 9}
  model = Captioner(encoders={"image": IMAGE, "text": TEXT}, fusion="concat", **{**FUSED, "decoder": decoder})
  task = GenerationTask(ml_collections.ConfigDict(dict(inputs={"image": "image", "text": "question"},
                                                       target="answer", prompt="question")), model,
                        decode_config=common.decode(), bos_id=BOS, eos_id=EOS, vocab_size=VOCAB)
  inputs = {"image": IMAGES, "text": QUESTIONS}
  params = jax.jit(model.init)(jax.random.PRNGKey(0), inputs, jnp.zeros((2, 9), jnp.int32))["params"]
  batch = {"image": IMAGES, "question": QUESTIONS, "answer": jnp.zeros((2, 3), jnp.int32)}
  result = interpret.caption_attention(task, params, batch)
  assert result.tokens.shape == (2, 3) and result.layers.shape == (2, 2, 3, 10 + 6)

  variables = {"params": params}
  state = model.apply(variables, *model.apply(variables, inputs, method=model.encode_tokens), 9,
                      method=model.init_decode_state)
  step = jax.jit(lambda tokens, index, state: model.apply(variables, tokens, index, state,
                                                          method=model.decode_step, mutable=["intermediates"]))
  decoder_input = np.concatenate([QUESTIONS, np.full((2, 1), BOS), result.tokens[:, :-1]], 1)
  for index in range(9):
    (_, state), sown = step(decoder_input[:, index], index, state)
    if index >= 6:
      for layer, block in enumerate(sown["intermediates"]["text_decoder"].values()):
        cached = np.asarray(block["cross_attn"]["attention_weights"][0])
        np.testing.assert_allclose(cached.mean(1)[:, 0], result.layers[:, layer, index - 6], atol=1e-6)
