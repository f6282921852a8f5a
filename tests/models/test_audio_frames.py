"""The audio encoders' per-time-step frames (what a CTC head scores): one vector per time step, in order."""
import einops
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmjax.models.encoders import AudioCNN, AudioSpectrogramTransformer

RATE = 8000
HALF_SECOND = 4000  # 48 frames of 25 ms every 10 ms.


@pytest.mark.parametrize("model,steps,per_step", [
    (AudioSpectrogramTransformer(sample_rate=RATE, width=16, depth=1, num_heads=2, mlp_dim=32, patch_time=4,
                                 patch_freq=8), 12, 5),  # 48 frames / 4; 40 mel bins / 8 tokens per step.
    (AudioSpectrogramTransformer(sample_rate=RATE, width=16, depth=1, num_heads=2, mlp_dim=32, patch_time=4,
                                 patch_freq=8, pool="cls"), 12, 5),  # The class token is no time step.
    (AudioCNN(sample_rate=RATE, widths=(8, 16, 16), width=16, num_mel_bins=36), 6, 5),  # 48×36 →(2) 24×18 → 12×9 → 6×5.
])
def test_frames_average_each_time_step_s_tokens(model, steps, per_step):
  waveform = jax.random.normal(jax.random.key(0), (2, HALF_SECOND))

  @jax.jit
  def frames_and_tokens(x):
    _, aux = model.apply(nn.unbox(model.init(jax.random.key(1, impl="rbg"), x)), x)
    return aux["frames"], aux["tokens"]

  frames, tokens = frames_and_tokens(waveform)
  tokens = tokens[:, 1:] if getattr(model, "pool", "") == "cls" else tokens
  assert frames.shape == (2, steps, 16) and tokens.shape[1] == steps * per_step
  expected = einops.reduce(tokens, "b (t f) d -> b t d", "mean", t=steps)
  np.testing.assert_allclose(frames, expected, rtol=1e-5, atol=1e-6)
  assert not jnp.allclose(frames[:, 0], frames[:, 1])  # Distinct steps, not one vector repeated.
