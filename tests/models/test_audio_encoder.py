"""Audio encoders (AST, CNN, Whisper) and the ConvNet: shapes, dtypes, gradients, errors, and that they can learn.
(Whisper's pretrained import and front end: tests/pretrained/test_whisper_import.py.)"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import common
from mmjax import errors
from mmjax.models.encoders import (ENCODERS, AudioCNN, AudioSpectrogramTransformer, ConvNet, ViT, WhisperEncoder,
                                   build_encoder)

RATE = 8000
TINY_AST = dict(sample_rate=RATE, width=32, depth=1, num_heads=2, mlp_dim=64, patch_time=4, patch_freq=8)
TINY_CNN = dict(widths=(8, 16), width=32)
TINY_AUDIO_CNN = dict(sample_rate=RATE, **TINY_CNN)
HALF_SECOND = 4000  # Samples at 8 kHz: 1 + (4000 − 200) // 80 = 48 frames.
# Whisper reads 16 kHz: the same 4000 samples are 0.25 s, 25 frames, 13 tokens in a 0.25 s window.
TINY_WHISPER = WhisperEncoder(sample_rate=16_000, variant="nano", window_seconds=0.25)


def _key(seed: int) -> jax.Array:
  """An RBG key: XLA compiles each threefry draw of an init separately (~0.5 s apiece on the 2-core test
  machine, 12 s for a small ConvNet's init) but RBG's in one op (1.5 s)."""
  return jax.random.key(seed, impl="rbg")


def _init_apply(model, x):
  """(params, model's output) from one compiled program: compiling dominates these tests' time."""
  @jax.jit
  def init_apply(x):
    params = nn.unbox(model.init(_key(0), x))
    return params, model.apply(params, x)
  return init_apply(x)


@pytest.mark.parametrize("model,tokens", [
    (AudioSpectrogramTransformer(**TINY_AST), 12 * 5),  # 48 frames / 4 × 40 mels / 8.
    (AudioSpectrogramTransformer(**TINY_AST, pool="cls"), 1 + 12 * 5),
    (AudioCNN(**TINY_AUDIO_CNN), 12 * 10),  # 48×40 → stem stride 2 → 24×20 → 12×10.
    (AudioSpectrogramTransformer(**{**TINY_AST, "patch_time": 5}), 9 * 5),  # 48 frames cropped to 45.
])
def test_audio_encoder_shapes(model, tokens):
  waveform = jax.random.normal(_key(1), (2, HALF_SECOND))
  _, (pooled, aux) = _init_apply(model, waveform)
  assert pooled.shape == (2, 32) and pooled.dtype == jnp.float32
  assert aux["tokens"].shape == (2, tokens, 32) and aux["mask"].shape == (2, tokens)
  assert aux["mask"].dtype == jnp.bool_ and aux["mask"].all()
  assert aux["spectrogram"].shape == (2, 48, 40) and aux["spectrogram"].dtype == jnp.float32


@pytest.mark.parametrize("shape,tokens", [((2, 28, 28, 1), 7 * 7), ((2, 64, 64, 3), 16 * 16)])
def test_convnet_on_images(shape, tokens):
  """MNIST-sized and RGB images; AudioCNN's tests cover spectrograms."""
  x = jax.random.uniform(_key(0), shape, minval=-1, maxval=1)
  _, (pooled, aux) = _init_apply(ConvNet(**{**TINY_CNN, "widths": (8, 8, 16)}), x)
  assert aux["tokens"].shape == (2, tokens, 32) and aux["mask"].all()
  np.testing.assert_allclose(pooled, aux["tokens"].mean(1), atol=1e-5)


def test_vit_takes_one_channel_images_when_configured_for_them():
  _, (pooled, aux) = _init_apply(ViT(variant="Nano/7", channels=1), jnp.zeros((2, 28, 28, 1)))
  assert pooled.shape == (2, 64) and aux["tokens"].shape == (2, 1 + 16, 64)
  with pytest.raises(errors.InputError, match=r"f32\[B, H, W, 3\].*got float32\[2, 28, 28, 1\].*`channels`"):
    _init_apply(ViT(variant="Nano/7"), jnp.zeros((2, 28, 28, 1)))


@pytest.mark.parametrize("model", [AudioSpectrogramTransformer(**TINY_AST, pool="cls"), AudioCNN(**TINY_AUDIO_CNN),
                                   TINY_WHISPER], ids=["ast", "cnn", "whisper"])
def test_gradients_are_finite_and_reach_every_param(model):
  waveform = jax.random.normal(_key(1), (2, HALF_SECOND))

  @jax.jit
  def perturbed_grads(waveform):
    params = nn.unbox(model.init(_key(0), waveform))
    # Perturbed: at init the residual branches' zero GroupNorm scale blocks their gradients by design.
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(_key(3), len(leaves))
    params = treedef.unflatten([p + 0.1 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])
    # A random projection of the tokens, so no gradient vanishes by symmetry (the mean of LayerNorm'd
    # tokens has none for the LN bias).
    def loss(params):
      tokens = model.apply(params, waveform)[1]["tokens"]
      return (tokens @ jax.random.normal(_key(2), tokens.shape[-1:])).sum() ** 2
    return jax.grad(loss)(params)

  grads = perturbed_grads(waveform)
  for path, grad in jax.tree_util.tree_leaves_with_path(grads):
    assert np.isfinite(grad).all(), path
    assert np.abs(grad).max() > 0, f"no gradient reaches {jax.tree_util.keystr(path)}"


@pytest.mark.parametrize("model", [AudioSpectrogramTransformer, AudioCNN], ids=["ast", "cnn"])
def test_bfloat16_compute_with_float32_params(model):
  kwargs = TINY_AST if model is AudioSpectrogramTransformer else TINY_AUDIO_CNN
  waveform = jax.random.normal(_key(1), (2, HALF_SECOND))
  params, (reference, _) = _init_apply(model(**kwargs), waveform)
  bf16 = model(**kwargs, dtype=jnp.bfloat16)
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(nn.unbox(jax.eval_shape(
      bf16.init, _key(0), waveform))))
  pooled, aux = jax.jit(bf16.apply)(params, waveform)
  assert pooled.dtype == aux["tokens"].dtype == jnp.bfloat16
  assert aux["spectrogram"].dtype == jnp.float32, "the front end stays in float32"
  np.testing.assert_allclose(pooled.astype(jnp.float32), reference, atol=0.1)


def test_remat_changes_nothing():
  model, x = ConvNet(**TINY_CNN), jax.random.normal(_key(1), (2, 16, 16, 1))
  params = nn.unbox(jax.jit(model.init)(_key(0), x))
  grads = jax.jit(lambda p, x: [jax.grad(lambda p, m=m: m.apply(p, x)[0].sum())(p)
                                for m in (model, ConvNet(**TINY_CNN, remat="full"))])(params, x)
  for expected, got in zip(*map(jax.tree.leaves, grads)):
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


def test_params_use_only_logical_axes_the_mesh_rules_know():
  known = {name for name, _ in common.TRANSFORMER_SHARDING_RULES} | {None}
  waveform = jnp.zeros((1, HALF_SECOND))
  for model in (AudioSpectrogramTransformer(**TINY_AST, pool="cls"), AudioCNN(**TINY_AUDIO_CNN), TINY_WHISPER):
    specs = nn.get_partition_spec(jax.eval_shape(model.init, _key(0), waveform))
    is_spec = lambda x: isinstance(x, jax.sharding.PartitionSpec)  # noqa: E731
    for path, spec in jax.tree_util.tree_leaves_with_path(specs, is_leaf=is_spec):
      assert spec, f"{jax.tree_util.keystr(path)} has no logical axis names"
      assert set(spec) <= known, f"{jax.tree_util.keystr(path)}: {spec}"


def test_build_encoder_by_name():
  assert isinstance(build_encoder("audio", {"name": "cnn", "width": 16}, sample_rate=RATE), AudioCNN)
  assert isinstance(build_encoder("image", {"name": "cnn", "width": 16}), ConvNet)
  assert {m: sorted(e) for m, e in ENCODERS.items()} == {"image": ["cnn", "efficientnet_lite", "features", "vit"],
                                                          "audio": ["ast", "cnn", "whisper"],
                                                          "text": ["bert", "bow", "cnn", "lstm", "transformer"],
                                                          "video": ["factorised", "tubelet"]}
  with pytest.raises(errors.ConfigError,
                     match=r"Unknown audio encoder 'wav2vec'; known: \['ast', 'cnn', 'whisper'\]"):
    build_encoder("audio", {"name": "wav2vec"})
  with pytest.raises(errors.ConfigError, match=r"Unknown modality 'smell'"):
    build_encoder("smell", {"name": "cnn"})
  with pytest.raises(errors.ConfigError,
                     match=r"has no `name`; set one of \['cnn', 'efficientnet_lite', 'features', 'vit'\]"):
    build_encoder("image", {"variant": "S/16"})


@pytest.mark.parametrize("model,waveform,error,message", [
    (AudioSpectrogramTransformer(**TINY_AST, num_mel_bins=36), jnp.zeros((1, HALF_SECOND)), errors.ConfigError,
     r"num_mel_bins=36 is not divisible by patch_freq=8"),
    (AudioSpectrogramTransformer(**TINY_AST), jnp.zeros((1, 400)), errors.InputError,
     r"3 spectrogram frames are fewer than patch_time=4"),
    (AudioSpectrogramTransformer(**TINY_AST, pool="max"), jnp.zeros((1, HALF_SECOND)), errors.ConfigError,
     r"Unknown AST pool 'max'"),
    (AudioCNN(**TINY_AUDIO_CNN), jnp.zeros((1, 2, HALF_SECOND)), errors.InputError, r"expects waveforms f32\[B, T\]"),
    (AudioCNN(**TINY_AUDIO_CNN), jnp.zeros((1, 100)), errors.InputError, r"shorter than one window of 200 samples"),
    (AudioCNN(sample_rate=RATE, widths=(8, 12)), jnp.zeros((1, HALF_SECOND)), errors.ConfigError,
     r"divisible by norm_groups=8"),
    (TINY_WHISPER, jnp.zeros((1, 200)), errors.InputError, r"too short for Whisper's front end"),
    (TINY_WHISPER.clone(variant="huge"), jnp.zeros((1, HALF_SECOND)), errors.ConfigError,
     r"Unknown Whisper variant 'huge'"),
])
def test_bad_config_or_input_is_named(model, waveform, error, message):
  with pytest.raises(error, match=message):
    jax.eval_shape(model.init, _key(0), waveform)


def _tones(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Half-second clips of a 500 Hz (label 0) or 1500 Hz (label 1) tone, random phase and gain, in noise."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 2, count)
  t = np.arange(HALF_SECOND) / 8000
  phase, gain = rng.uniform(0, 2 * np.pi, (count, 1)), rng.uniform(0.1, 1.0, (count, 1))
  tone = gain * np.sin(2 * np.pi * np.where(labels, 1500.0, 500.0)[:, None] * t + phase)
  return (tone + 0.3 * gain * rng.standard_normal(tone.shape)).astype(np.float32), labels


class _Classifier(nn.Module):
  encoder: nn.Module

  @nn.compact
  def __call__(self, waveform):
    return nn.Dense(2)(self.encoder(waveform)[0])


def test_ast_learns_to_separate_two_tones():
  """64 clips, 30 full-batch adam steps; it reaches 100% on train and held-out clips in ~10 (so does AudioCNN)."""
  waveform, labels = _tones(64, seed=0)
  model = _Classifier(AudioSpectrogramTransformer(**TINY_AST))
  params = nn.unbox(jax.jit(model.init)(_key(0), waveform))
  optimizer = optax.adam(3e-3)

  @jax.jit
  def step(params, opt_state):
    loss, grads = jax.value_and_grad(lambda p: optax.softmax_cross_entropy_with_integer_labels(
        model.apply(p, waveform), labels).mean())(params)
    updates, opt_state = optimizer.update(grads, opt_state)
    return optax.apply_updates(params, updates), opt_state, loss

  opt_state = optimizer.init(params)
  for _ in range(30):
    params, opt_state, loss = step(params, opt_state)
  predict = jax.jit(lambda params, waveform: model.apply(params, waveform).argmax(-1))
  accuracy = (predict(params, waveform) == labels).mean()
  assert accuracy >= 0.95, f"train accuracy {accuracy:.2f}, loss {loss:.3f}"
  held_out, held_out_labels = _tones(64, seed=1)
  assert (predict(params, held_out) == held_out_labels).mean() >= 0.9
