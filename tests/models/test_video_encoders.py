"""The video encoders: shapes and masks, the tubelet embedding against its definition, what each one reads of
time, bad input, and initialisation sharded over a data × fsdp × model mesh of 8 fake devices."""
import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from configs import common
from mmjax import errors
from mmjax.models.encoders import ENCODERS, FactorisedVideoEncoder, TubeletEncoder, build_encoder
from mmjax.parallel import sharding

FACTORISED = dict(name="factorised", variant="Nano/16", temporal_depth=1)
TUBELET = dict(name="tubelet", variant="Nano/16", tubelet_frames=2)
VIDEO = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (4, 4, 32, 32, 3)), jnp.float32)  # B, T, H, W, C.
KEY = jax.random.PRNGKey(0)


def test_a_tubelet_token_is_one_linear_map_of_its_tube():
  """Tube (slot s, patch i, j) = Σ video[s·t + τ, i·p + y, j·p + x, c] · kernel[y, x, τ·C + c] + bias: the frames of
  a tube are consecutive and stacked in time order (read from the patch embedding's output)."""
  encoder = TubeletEncoder(variant="Nano/16", posemb="learn", pool="mean")
  params = jax.jit(encoder.init)(KEY, VIDEO)
  _, state = jax.jit(lambda p, v: encoder.apply(p, v, capture_intermediates=True, mutable=["intermediates"]))(
      params, VIDEO)
  embedded = state["intermediates"]["patch_embed"]["__call__"][0].reshape(4, 2, 4, 64)  # B, slots, patches, width.
  conv = params["params"]["patch_embed"]["conv"]
  kernel = nn.unbox(conv["kernel"]).reshape(16, 16, 2, 3, 64)  # y, x, τ, c, width.
  tubes = VIDEO.reshape(4, 2, 2, 2, 16, 2, 16, 3)  # B, slot, τ, i, y, j, x, c.
  expected = jnp.einsum("bstiyjxc,yxtcw->bsijw", tubes, kernel).reshape(4, 2, 4, 64) + nn.unbox(conv["bias"])
  np.testing.assert_allclose(embedded, expected, atol=1e-4)


@pytest.mark.parametrize("block,video,error,message", [
    (FACTORISED, VIDEO[:, 0], errors.InputError, r"expects clips f32\[B, T, H, W, 3\].*got float32\[4, 32, 32, 3\]"),
    (TUBELET, VIDEO[:, :3], errors.ConfigError, r"Clips of 3 frames do not split into tubelets of 2 frames"),
])
def test_bad_clips_are_clear_errors(block, video, error, message):
  with pytest.raises(error, match=message):
    jax.eval_shape(build_encoder("video", block).init, KEY, video)


@pytest.mark.parametrize("block,tokens", [(FACTORISED, 4), (TUBELET, 1 + 2 * 2 * 2)])
def test_shapes_and_sharded_init_and_forward_equal_one_device(block, tokens):
  """Created already sharded (data 2 × fsdp 2 × model 2, as the trainer does), the clip split over the batch axes
  (the factorised tower's frames folded into it), the outputs equal the unsharded encoder's; tokens one per frame
  (factorised) or [CLS] and one per tube; the frames' order matters to both."""
  encoder = build_encoder("video", block)
  assert ENCODERS["video"] == {"factorised": FactorisedVideoEncoder, "tubelet": TubeletEncoder}
  mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "model": 2}, jax.devices()[:8])
  rules = sharding.rules_for_mesh(common.TRANSFORMER_SHARDING_RULES, mesh)
  boxed = jax.eval_shape(encoder.init, KEY, VIDEO)
  shardings = sharding.logical_shardings(boxed, mesh, rules)
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    params = jax.jit(lambda key: nn.unbox(encoder.init(key, VIDEO)), out_shardings=shardings)(KEY)
    apply = jax.jit(encoder.apply)
    pooled, aux = apply(params, jax.device_put(VIDEO, sharding.batch_sharding(mesh, rules)))
    reversed_pooled, _ = apply(params, jax.device_put(VIDEO[:, ::-1], sharding.batch_sharding(mesh, rules)))
  chex.assert_shape([pooled, aux["tokens"], aux["mask"]], [(4, 64), (4, tokens, 64), (4, tokens)])
  assert aux["mask"].all() and not np.allclose(pooled, reversed_pooled, atol=1e-4)
  tower = params["params"]["frame_encoder"] if block is FACTORISED else params["params"]
  assert tower["encoder"]["block_0"]["mlp"]["fc1"]["kernel"].sharding.spec == P("fsdp", "model")
  assert tower["encoder"]["block_0"]["attn"]["query"]["kernel"].sharding.spec == P("fsdp", "model", None)
  assert params["params"]["time_embed"]["pos_embedding"].sharding.spec == P(None, "fsdp")
  reference = jax.jit(encoder.apply)(jax.device_get(params), VIDEO)
  np.testing.assert_allclose(pooled, reference[0], atol=1e-5)
  np.testing.assert_allclose(aux["tokens"], reference[1]["tokens"], atol=1e-5)
