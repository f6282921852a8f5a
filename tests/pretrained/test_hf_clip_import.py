"""A Hugging Face CLIPModel checkpoint imported into TwoTower gives transformers' outputs.

No CLIP weights exist offline: the checkpoint (tests/fixtures/pretrained/hf_clip_tiny/) is a tiny random
CLIPModel with every constant parameter perturbed, and the reference (hf_clip_tiny_reference.npz) its outputs on
4 images and 5 captions, recorded once by make_hf_clip_reference.py beside them. One caption has id 0 ("!" in
CLIP's vocabulary) in its middle, and the captions are padded with id 1 after eos at different lengths.
"""
import json
import os
import shutil

import flax.linen as nn
import jax
import ml_collections
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec
from safetensors.numpy import load_file, save_file

from mmjax import errors, models
from mmjax.models import TwoTower
from mmjax.pretrained import hf_clip
from mmjax.trainer import finetune
from mmjax.trainer.state import TrainState

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures", "pretrained")
CHECKPOINT = os.path.join(FIXTURES, "hf_clip_tiny")
# Measured (float32, CPU): intermediates ≤ 9.6e-7, embeddings ≤ 2.3e-7, logits ≤ 3.4e-6 (2.3e-7 of their scale).
MAX_ABS = 1e-5
# Recorded intermediates in forward order: (TwoTower submodule path, fixture name).
INTERMEDIATES = (("image_encoder/ln_pre", "vision_pre_layrnorm"), ("image_encoder/encoder/block_0", "vision_layer0"),
                 ("text_encoder/encoder/block_0", "text_layer0"))


def _init_shapes(model: TwoTower, reference: dict) -> dict:
  images, ids = reference["images"][:1], reference["input_ids"][:1]
  return jax.eval_shape(model.init, jax.random.PRNGKey(0), images, ids)["params"]


@pytest.fixture(scope="module")
def clip():
  """(reference, imported params, jitted apply: (images, ids) → (image embeddings, text embeddings, every layer's
  output)), built once."""
  reference = dict(np.load(os.path.join(FIXTURES, "hf_clip_tiny_reference.npz")))
  model = TwoTower(**hf_clip.architecture(CHECKPOINT))
  params = hf_clip.import_params(CHECKPOINT, _init_shapes(model, reference))

  def apply(images, ids):
    ((image_emb, text_emb), _), state = model.apply({"params": params}, images, ids, capture_intermediates=True)
    return image_emb, text_emb, state["intermediates"]

  return reference, params, jax.jit(apply)


def _max_abs(name: str, ours: np.ndarray, theirs: np.ndarray) -> float:
  error = float(np.abs(np.asarray(ours) - theirs).max())
  assert error <= MAX_ABS, f"{name} differs from transformers' by up to {error:.2e}"
  return error


def test_architecture_is_the_checkpoints():
  assert hf_clip.architecture(CHECKPOINT) == dict(
      image=dict(name="vit", variant="B/8", width=64, depth=2, num_heads=4, mlp_dim=128, patch_size=8, channels=3,
                 pool="cls", posemb="learn", max_tokens=17, ln_pre=True, activation="quick_gelu", epsilon=1e-5),
      text=dict(name="transformer", vocab_size=1000, width=48, depth=2, num_heads=4, mlp_dim=96, max_len=16,
                causal=True, pool="last", eos_id=999, activation="quick_gelu", epsilon=1e-5),
      embed_dim=32, logit_scale_init=2.6592)


def test_architecture_fills_transformers_defaults_and_maps_legacy_eos(tmp_path):
  """Keys a config.json leaves out take transformers' defaults (openai/clip-vit-base-patch32's shape); configs
  from before transformers PR #24773 say eos_token_id=2 and pool at the highest id, <|endoftext|>."""
  (tmp_path / "config.json").write_text(json.dumps({"vision_config": {"hidden_act": "gelu"},
                                                    "text_config": {"eos_token_id": 2}}))
  fields = hf_clip.architecture(str(tmp_path))
  assert {k: fields["image"][k] for k in ("width", "depth", "num_heads", "patch_size", "max_tokens", "activation")} \
      == dict(width=768, depth=12, num_heads=12, patch_size=32, max_tokens=50, activation="gelu_erf")
  assert {k: fields["text"][k] for k in ("vocab_size", "width", "max_len", "eos_id", "activation")} \
      == dict(vocab_size=49408, width=512, max_len=77, eos_id=49407, activation="quick_gelu")
  assert fields["embed_dim"] == 512


def test_intermediates_equal_reference(clip):
  """Layer by layer in forward order, so a mismatch names the first layer that differs. Text positions after
  eos are padding, which neither implementation reads from (causal attention)."""
  reference, _, apply = clip
  *_, intermediates = apply(reference["images"], reference["input_ids"])
  for path, name in INTERMEDIATES:
    node = intermediates
    for part in path.split("/"):
      node = node[part]
    ours, theirs = np.asarray(node["__call__"][0]), reference[name]
    if name.startswith("text"):
      valid = reference["attention_mask"].astype(bool)
      ours, theirs = ours[valid], theirs[valid]
    _max_abs(f"{path} ({name})", ours, theirs)


def test_embeddings_and_logits_equal_reference(clip):
  reference, params, apply = clip
  image_emb, text_emb, _ = apply(reference["images"], reference["input_ids"])
  _max_abs("image embeddings", image_emb, reference["image_embeds"])
  _max_abs("text embeddings", text_emb, reference["text_embeds"])
  # Logits are exp(logit_scale) ≈ 15 times cosines: compared in units of that scale, as the cosines they are.
  scale = np.exp(params["logit_scale"])
  logits = scale * np.asarray(image_emb) @ np.asarray(text_emb).T
  _max_abs("logits_per_image / exp(logit_scale)", logits / scale, reference["logits_per_image"] / scale)


def test_text_embedding_ignores_what_follows_eos(clip):
  """Ids after the first eos are padding whatever they are, 0 included; id 0 before eos is a token."""
  reference, _, apply = clip
  ids = reference["input_ids"]
  after_eos = ~reference["attention_mask"].astype(bool)
  _, text_emb, _ = apply(reference["images"], np.where(after_eos, 0, ids))
  _max_abs("text embeddings with 0-padding", text_emb, reference["text_embeds"])
  _, text_emb, _ = apply(reference["images"], np.where(ids == 0, 5, ids))
  assert np.abs(np.asarray(text_emb)[3] - reference["text_embeds"][3]).max() > 1e-3


def test_folder_without_checkpoint_files_is_named(tmp_path):
  with pytest.raises(errors.ConfigError, match=rf"{tmp_path} holds none of \['config.json'\]"):
    hf_clip.architecture(str(tmp_path))
  shutil.copy(os.path.join(CHECKPOINT, "config.json"), tmp_path)
  with pytest.raises(errors.ConfigError, match=rf"{tmp_path} holds none of \['model.safetensors'\]"):
    hf_clip.import_params(str(tmp_path), {})


def test_misconfigured_module_names_first_misshaped_key(clip):
  fields = hf_clip.architecture(CHECKPOINT)
  model = TwoTower(**{**fields, "text": {**fields["text"], "width": 32}})
  with pytest.raises(errors.ConfigError, match=r"text_encoder/embed/embedding/embedding is \(1000, 48\) in the "
                                               r"checkpoint but \(1000, 32\) in the configured module"):
    hf_clip.import_params(CHECKPOINT, _init_shapes(model, clip[0]))


@pytest.mark.parametrize("change, message", [
    ("extra", r"has tensors a CLIPModel does not, such as text_model.extra.weight"),
    ("missing", r"has no tensor text_projection.weight"),
])
def test_checkpoint_of_another_model_is_refused(clip, tmp_path, change, message):
  tensors = load_file(os.path.join(CHECKPOINT, "model.safetensors"))
  if change == "extra":
    tensors["text_model.extra.weight"] = np.zeros(3, np.float32)
  else:
    del tensors["text_projection.weight"]
  shutil.copy(os.path.join(CHECKPOINT, "config.json"), tmp_path)
  save_file(tensors, str(tmp_path / "model.safetensors"))
  with pytest.raises(errors.ConfigError, match=message):
    hf_clip.import_params(str(tmp_path), clip[1])


def test_one_config_key_builds_and_loads_the_checkpoint_in_the_trainers_restore_order(clip):
  """`config.model.pretrained` alone: models.build takes the towers from the checkpoint's config.json and
  finetune.load_pretrained (the trainer's fresh-init step) imports its weights, placed on the mesh."""
  reference, imported, _ = clip
  model_config = ml_collections.ConfigDict(dict(name="two_tower", pretrained=CHECKPOINT, image={}, text={},
                                                embed_dim=0, dtype="float32", param_dtype="float32", remat="none"))
  model = models.build(model_config)
  fresh = jax.jit(model.init)(jax.random.PRNGKey(1), reference["images"][:1], reference["input_ids"][:1])["params"]
  fresh = nn.unbox(fresh)  # As the trainer's state holds them.
  state = TrainState(step=0, params=fresh, opt_state=None, rng=None)
  replicated = NamedSharding(jax.sharding.Mesh(jax.devices()[:1], ("data",)), PartitionSpec())
  loaded = finetune.load_pretrained(state, model_config.to_dict(),
                                    TrainState(0, jax.tree.map(lambda _: replicated, fresh), None, None)).params
  jax.tree.map(np.testing.assert_array_equal, loaded, imported)
  (image_emb, text_emb), _ = jax.jit(model.apply)({"params": loaded}, reference["images"], reference["input_ids"])
  _max_abs("image embeddings", image_emb, reference["image_embeds"])
  _max_abs("text embeddings", text_emb, reference["text_embeds"])
