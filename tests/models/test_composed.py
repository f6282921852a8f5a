"""The composed models: encoders → one fusion interface → a classifier head or a text decoder."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmjax import errors
from mmjax.models import FUSIONS, TOKEN_LEVEL, Captioner, Classifier

IMAGE = dict(name="vit", variant="Nano/8", width=32, num_heads=2)
TEXT = dict(name="transformer", vocab_size=24, width=32, depth=1, num_heads=2, mlp_dim=64, max_len=8)
DECODER = dict(vocab_size=24, depth=1, num_heads=2, mlp_dim=64, max_len=6)
FUSED = dict(encoders={"image": IMAGE, "text": TEXT}, width=32, fusion_depth=1, num_heads=2, mlp_dim=64)
IMAGES = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (2, 16, 16, 3)), jnp.float32)
PROMPT = jnp.array([[9, 10, 3, 0], [11, 3, 0, 0]])
DECODER_INPUT = jnp.array([[2, 5, 6], [2, 7, 8]])


def _inputs(prompt=PROMPT):
  return {"image": IMAGES, "text": prompt}


@pytest.mark.parametrize("fusion", ["concat", "mult"])
def test_captioner_prompt_padding_changes_nothing(fusion):
  model = Captioner(**FUSED, fusion=fusion, decoder=DECODER)
  params = jax.jit(model.init)(jax.random.PRNGKey(0), _inputs(), DECODER_INPUT)
  apply = jax.jit(model.apply)
  logits = apply(params, _inputs(), DECODER_INPUT)
  chex.assert_shape(logits, (2, 3, DECODER["vocab_size"]))
  np.testing.assert_allclose(logits, apply(params, _inputs(jnp.pad(PROMPT, ((0, 0), (0, 3)))), DECODER_INPUT),
                             atol=1e-5)
  with pytest.raises(errors.InputError, match=r"configured for modalities \['image', 'text'\].*called with "
                                               r"\['image'\]"):
    model.apply(params, {"image": IMAGES}, DECODER_INPUT)


@pytest.mark.parametrize("fusion", ["concat", "late_mean"])
def test_classifier_shapes_padding_and_unimodal_logits(fusion):
  model = Classifier(**FUSED, fusion=fusion, num_classes=7)
  params = jax.jit(model.init)(jax.random.PRNGKey(0), _inputs())
  apply = jax.jit(model.apply)
  logits, aux = apply(params, _inputs())
  chex.assert_shape(logits, (2, 7))
  chex.assert_type(logits, jnp.float32)
  np.testing.assert_allclose(logits, apply(params, _inputs(jnp.pad(PROMPT, ((0, 0), (0, 2)))))[0], atol=1e-5)
  decision_level = FUSIONS[fusion].decision_level
  assert sorted(aux["unimodal_logits"]) == (["image", "text"] if decision_level else [])
  # A decision-level fusion's own logits replace the head: there is no head to train.
  assert ("head" in params["params"]) != decision_level


def test_towers_are_named_for_fine_tuning():
  """Encoders sit at `<modality>_encoder`, as TwoTower's towers do, so init_from finds them."""
  shapes = jax.eval_shape(Captioner(**FUSED, fusion="concat", decoder=DECODER).init, jax.random.PRNGKey(0),
                          _inputs(), DECODER_INPUT)["params"]
  assert {"image_encoder", "text_encoder", "text_decoder"} <= set(shapes)


@pytest.mark.parametrize("fusion", sorted(set(FUSIONS) - set(TOKEN_LEVEL)))
def test_a_captioner_refuses_a_fusion_without_tokens(fusion):
  model = Captioner(**FUSED, fusion=fusion, num_classes=3, decoder=DECODER)
  with pytest.raises(errors.ConfigError, match=f"config.model.fusion='{fusion}' yields no fused tokens"):
    jax.eval_shape(model.init, jax.random.PRNGKey(0), _inputs(), DECODER_INPUT)


def test_a_classifier_needs_classes():
  with pytest.raises(errors.ConfigError, match="needs num_classes ≥ 1"):
    jax.eval_shape(Classifier(**FUSED, fusion="concat").init, jax.random.PRNGKey(0), _inputs())
