"""EfficientNetLite without its checkpoint: the architecture of every variant against the reference package's,
the encoder contract, frozen batch norm, and the errors a user sees. (Equality with the reference on real photos:
tests/pretrained/test_efficientnet_import.py.)"""
import json
import os

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmjax import errors
from mmjax.models.encoders import ENCODERS, build_encoder
from mmjax.models.encoders.efficientnet import LITE_VARIANTS, EfficientNetLite, MBConvBlock, block_configs
from mmjax.pretrained import efficientnet, files
from mmjax.trainer.optimizer import decay_mask

pytestmark = pytest.mark.xdist_group("efficientnet_small_run")  # One worker: the module's forward runs once.
FIXTURE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "pretrained",
                       "efficientnet_lite0_reference.npz")


def _params(model: nn.Module, size: int = 32) -> dict:
  return nn.meta.unbox(jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, size, size, 3))))["params"]


@pytest.mark.parametrize("variant", sorted(LITE_VARIANTS))
def test_every_variant_has_the_reference_packages_parameter_count(variant):
  """EfficientNet.from_name(f'efficientnet-{variant}')'s weights and batch-norm statistics (recorded in the
  fixture): width rounding, depth scaling and the unscaled stem, head and outer stages all enter the count."""
  counts = json.loads(str(np.load(FIXTURE)["meta"]))["parameter_counts"]
  params = _params(EfficientNetLite(variant=variant, num_classes=1000))
  assert sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params)) == counts[variant]
  assert len([name for name in params if name.startswith("block_")]) == len(block_configs(variant))


def test_lite0_blocks_are_those_of_the_reference():
  """(kernel, stride, expand, output channels) of the package's 16 Lite0 blocks, from its block strings."""
  stages = [(3, 1, 1, 16)] + [(3, 2, 6, 24), (3, 1, 6, 24)] + [(5, 2, 6, 40), (5, 1, 6, 40)] + \
      [(3, 2, 6, 80)] + [(3, 1, 6, 80)] * 2 + [(5, 1, 6, 112)] * 3 + [(5, 2, 6, 192)] + [(5, 1, 6, 192)] * 3 + \
      [(3, 1, 6, 320)]
  assert block_configs("lite0") == stages


@pytest.fixture(scope="module")
def small_run():
  """(model, params, image, pooled, aux) of Lite0 with its ImageNet weights on two random 64×64 images. (Imported:
  compiling a random init of the tower takes several times longer than importing the checkpoint.)"""
  model = EfficientNetLite(num_classes=1000)
  image = jax.random.normal(jax.random.key(1), (2, 64, 64, 3))
  params = efficientnet.import_params(files.resolve("efficientnet-lite0", "test"), _params(model))
  pooled, aux = jax.jit(model.apply)({"params": params}, image)
  return model, params, image, pooled, aux


def test_outputs_follow_the_encoder_contract(small_run):
  _, _, _, pooled, aux = small_run
  assert pooled.shape == (2, 1280) and aux["tokens"].shape == (2, 4, 1280)  # 64 / 32 = 2: a 2×2 feature map.
  assert aux["mask"].dtype == jnp.bool_ and bool(aux["mask"].all())
  assert aux["logits"].shape == (2, 1000) and aux["logits"].dtype == jnp.float32
  np.testing.assert_allclose(pooled, aux["tokens"].mean(1), rtol=1e-5, atol=1e-6)
  assert float(aux["tokens"].min()) >= 0 and float(aux["tokens"].max()) <= 6  # The head ends in ReLU6.


def test_odd_sizes_pad_like_tensorflow_same():
  """Every stride-2 convolution maps n to ⌈n/2⌉, so 65×47 ends at a ⌈65/32⌉×⌈47/32⌉ = 3×2 feature map."""
  model = EfficientNetLite()
  variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 65, 47, 3)))
  pooled, aux = jax.eval_shape(model.apply, variables, jnp.zeros((1, 65, 47, 3)))
  assert aux["tokens"].shape == (1, 6, 1280) and pooled.shape == (1, 1280) and "logits" not in aux


def test_batch_norm_statistics_are_frozen_and_spared_by_weight_decay(small_run):
  """No gradient reaches the running statistics (shown on block 3 with its imported weights: an expand, a
  depthwise and a project batch norm), and weight decay leaves every batch-norm parameter of the tower alone."""
  _, params, _, _, _ = small_run
  block, inputs = MBConvBlock(5, 2, 6, 40), jax.random.normal(jax.random.key(2), (1, 16, 16, 24))
  loss = lambda block_params: (block.apply({"params": block_params}, inputs) ** 2).sum()
  grads = flax.traverse_util.flatten_dict(jax.jit(jax.grad(loss))(params["block_3"]), sep="/")
  assert len(grads) == 3 * 5  # Three convolutions, each with a kernel and four batch-norm vectors.
  for name, grad in grads.items():
    assert np.asarray(grad).any() != name.endswith(("/mean", "/var")), name
  mask = flax.traverse_util.flatten_dict(decay_mask(params), sep="/")
  norms = [name for name in mask if "/bn/" in name]
  assert len(norms) == 4 * (2 + 16 * 3 - 1)  # Stem, head and every block's convolutions but block 0's expand.
  assert not any(mask[name] for name in norms)


def test_builds_from_an_encoder_config_with_dtype_and_remat():
  assert ENCODERS["image"]["efficientnet_lite"] is EfficientNetLite
  encoder = build_encoder("image", {"name": "efficientnet_lite", "variant": "lite0"}, dtype=jnp.bfloat16,
                          remat="full", name="image_encoder")
  image = jnp.zeros((2, 32, 32, 3))
  variables = jax.eval_shape(encoder.init, jax.random.key(0), image)
  pooled, aux = jax.eval_shape(encoder.apply, variables, image)
  assert pooled.dtype == jnp.bfloat16 and pooled.shape == (2, 1280)
  assert jax.tree.map(lambda p: p.shape, nn.meta.unbox(variables)["params"]) == \
      jax.tree.map(lambda p: p.shape, _params(EfficientNetLite()))  # remat leaves the parameter paths alone.


@pytest.mark.parametrize("shape,dtype", [((32, 32, 3), jnp.float32), ((1, 32, 32, 1), jnp.float32),
                                         ((1, 32, 32, 3), jnp.uint8)], ids=["no batch", "grayscale", "uint8"])
def test_wrong_images_are_input_errors(shape, dtype):
  with pytest.raises(errors.InputError, match=r"EfficientNetLite expects RGB images f32\[B, H, W, 3\]"):
    EfficientNetLite().init(jax.random.key(0), jnp.zeros(shape, dtype))


def test_an_unknown_variant_is_a_config_error():
  with pytest.raises(errors.ConfigError, match=r"Unknown EfficientNet-Lite variant 'lite5'.*'lite4'"):
    _params(EfficientNetLite(variant="lite5"))
