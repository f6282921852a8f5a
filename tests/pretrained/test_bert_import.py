"""all-MiniLM-L6-v2 imported into BertEncoder equals sentence-transformers' embeddings.

The reference (tests/fixtures/pretrained/minilm_reference.npz) was recorded once by make_minilm_reference.py
beside it: the ids sentence-transformers feeds the model, its normalised embeddings as one padded batch and one
sentence at a time, and two intermediate activations of the first two sentences.
"""
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from mmjax import errors
from mmjax.data.subword import WordPieceTokenizer
from mmjax.data.tokenizer import tokenize_to_length
from mmjax.models.encoders import BertEncoder
from mmjax.pretrained import bert, files

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "pretrained", "minilm_reference.npz")
MIN_COSINE = 0.9999
MAX_ABS = 1e-4  # Measured: ~3e-7 (float32 on CPU).
# The sentences run one at a time: a short one, one word, accents, CJK, emoji, the empty text (only [CLS] and
# [SEP]), one of 124 tokens and one truncated to 128.
SINGLES = (0, 2, 5, 7, 10, 22, 23, 24)
# The encoder's layers whose outputs were recorded, in order, and what each output is called in the fixture.
INTERMEDIATES = (("embed_norm", "embedding_norm"), ("encoder/block_0", "layer_0"))


def _init_shapes(model):
  return jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 8), jnp.int32))["params"]


@pytest.fixture(scope="module")
def minilm():
  """(checkpoint folder, reference, params, jitted encoder that also returns every layer's output), built once."""
  path = files.resolve("all-MiniLM-L6-v2", "test")
  model = BertEncoder(**{k: v for k, v in bert.architecture(path).items() if k != "name"})
  params = bert.import_params(path, _init_shapes(model))
  # Params as an argument, not constants of the program: each new length then compiles in a third of the time
  # (0.4 s instead of 1.2 s), without copying 90 MB of weights into it.
  encode = jax.jit(lambda params, tokens: model.apply({"params": params}, tokens, capture_intermediates=True))
  return path, dict(np.load(FIXTURE)), params, functools.partial(encode, jax.device_put(params))


def _compare(name, ours, reference):
  """Row-wise embeddings within MIN_COSINE and MAX_ABS of the reference's; the message gives both figures."""
  cosine = (ours * reference).sum(1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(reference, axis=1))
  error = float(np.abs(ours - reference).max())
  assert cosine.min() >= MIN_COSINE and error <= MAX_ABS, (
      f"{name}: min cosine {cosine.min():.7f} (sentence {cosine.argmin()}), max abs error {error:.2e}")


def test_checkpoint_config_is_the_encoders(minilm):
  path = minilm[0]
  assert bert.architecture(path) == {
      "name": "bert", "vocab_size": 30522, "width": 384, "depth": 6, "num_heads": 12, "mlp_dim": 1536,
      "max_len": 512, "type_vocab_size": 2, "epsilon": 1e-12, "pool": "mean", "normalize": True}
  assert bert.sequence_length(path) == 256  # sentence_bert_config.json's max_seq_length.


def test_wordpiece_tokenizer_gives_the_reference_ids(minilm):
  """mmjax's tokenizer feeds the model what sentence-transformers' fed it: [CLS] … [SEP], truncated to 128."""
  path, reference, _, _ = minilm
  tokenizer = WordPieceTokenizer(path)
  for sentence, want in zip(reference["sentences"], reference["ids"]):
    np.testing.assert_array_equal(tokenize_to_length(tokenizer, str(sentence), 128), want, err_msg=repr(sentence))


def test_intermediates_equal_reference(minilm):
  """Layer by layer, so a mismatch names the first layer that differs."""
  _, reference, _, encode = minilm
  ids = reference["ids"][:2]
  ids = ids[:, :(ids != 0).sum(1).max()]
  _, state = encode(jnp.asarray(ids))
  for layer, recorded in INTERMEDIATES:
    node = state["intermediates"]
    for part in layer.split("/"):
      node = node[part]
    ours = np.asarray(node["__call__"][0])[ids != 0]
    np.testing.assert_allclose(ours, reference[recorded], atol=2e-5, err_msg=f"first mismatch: {layer}")


def test_padded_batch_equals_reference(minilm):
  _, reference, _, encode = minilm
  ids = reference["ids"]  # Every sentence padded to 128 tokens, as sentence-transformers batched them.
  assert ids.shape[1] == 128 and (ids[:, -1] == 0).any() and (ids != 0).all(axis=1).any()
  (pooled, aux), _ = encode(jnp.asarray(ids))
  np.testing.assert_array_equal(aux["mask"], ids != 0)
  _compare("padded batch", np.asarray(pooled), reference["embeddings_batch"])


def test_one_sentence_at_a_time_equals_reference(minilm):
  """Sentences at their own lengths, without padding. Each new length compiles the model (~0.5 s), so this takes
  one sentence of each kind; the padded batch covers them all."""
  _, reference, _, encode = minilm
  pooled = []
  for row in reference["ids"][list(SINGLES)]:
    (one, _), _ = encode(jnp.asarray(row[row != 0])[None])
    pooled.append(np.asarray(one[0]))
  _compare("one at a time", np.stack(pooled), reference["embeddings_single"][list(SINGLES)])


def test_folder_without_checkpoint_is_a_config_error(tmp_path):
  with pytest.raises(errors.ConfigError, match=f"{tmp_path}.*model.safetensors"):
    bert.import_params(str(tmp_path), _init_shapes(BertEncoder()))


def test_checkpoint_into_a_differently_configured_encoder_names_the_key(minilm):
  narrow = BertEncoder(width=256, num_heads=8, mlp_dim=1024)
  with pytest.raises(errors.ConfigError, match=r"embed/embedding/embedding is \(30522, 384\) in the checkpoint "
                                               r"but \(30522, 256\)"):
    bert.import_params(minilm[0], _init_shapes(narrow))


def test_prefixed_keys_and_pooler_import_the_same(minilm, tmp_path):
  """A BertFor*/BertModel-with-pooler checkpoint ("bert." prefix, pooler.*) gives the same params."""
  path, _, params, _ = minilm
  tensors = {f"bert.{k}": v for k, v in load_file(os.path.join(path, "model.safetensors")).items()}
  tensors["bert.pooler.dense.weight"] = np.zeros((384, 384), np.float32)
  save_file(tensors, str(tmp_path / "model.safetensors"))
  prefixed = bert.import_params(str(tmp_path / "model.safetensors"), _init_shapes(BertEncoder()))
  jax.tree.map(np.testing.assert_array_equal, prefixed, params)


def test_unknown_weight_is_a_config_error(tmp_path):
  save_file({"encoder.rel_embeddings.weight": np.zeros((2, 2), np.float32)}, str(tmp_path / "model.safetensors"))
  with pytest.raises(errors.ConfigError, match="'encoder.rel_embeddings.weight', which is not a BERT weight"):
    bert.import_params(str(tmp_path), _init_shapes(BertEncoder()))
