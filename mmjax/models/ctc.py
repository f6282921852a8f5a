"""CTC speech recogniser: an audio encoder → one linear layer over the characters and the blank, per time step.

The classic alternative to an attention decoder (Graves et al. 2006; the Deep Speech family): no decoder, no
alignment to learn, the output's order is the audio's. mmjax.tasks.ctc trains it and decodes its scores.
"""
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax import errors
from mmjax import nn as mnn
from mmjax.models.encoders import build_encoder


class CtcRecognizer(nn.Module):
  """{"audio": waveform f32[B, T]} → (logits f32[B, T', vocab_size], aux{"frames": [B, T', width]}).

  `encoders` holds one block, the audio encoder's ({"audio": {"name": "ast", ...}}, as the composed models'
  `encoders`, so its tower is named `audio_encoder` and `config.init_from` can load it from a captioner's run).
  Its `aux["frames"]`, one vector per time step (mmjax.models.encoders.audio), are scored by a linear layer;
  id `blank_id` of the vocabulary is CTC's blank (the tokenizer's padding id: no text contains it). The encoder
  must give at least as many frames as the longest transcript has characters (mmjax.tasks.ctc checks).
  `sample_rate` belongs to the dataset and is filled in from its metadata when a run is built.
  """
  encoders: Mapping[str, Mapping[str, Any]]
  vocab_size: int
  sample_rate: int | None = None
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  remat: str = "none"

  @property
  def modalities(self) -> tuple[str, ...]:
    return tuple(self.encoders)

  @nn.compact
  def __call__(self, inputs: Mapping[str, jax.Array]) -> tuple[jax.Array, dict[str, jax.Array]]:
    if set(self.encoders) != {"audio"}:
      raise errors.ConfigError(f"A CTC recogniser reads audio only: config.model.encoders must be {{'audio': ...}}; "
                               f"got {sorted(self.encoders)}.")
    encoder = build_encoder("audio", self.encoders["audio"], dtype=self.dtype, param_dtype=self.param_dtype,
                            remat=self.remat, sample_rate=self.sample_rate, name="audio_encoder")
    _, aux = encoder(inputs["audio"])
    if "frames" not in aux:
      raise errors.ConfigError(f"The audio encoder {self.encoders['audio'].get('name')!r} gives no per-time-step "
                               "aux['frames'], which a CTC head scores; give it one (see mmjax.models.encoders.audio).")
    frames = nn.with_logical_constraint(aux["frames"], ("batch", "length", "embed"))
    logits = mnn.dense(self.vocab_size, ("embed", "vocab"), self.dtype, self.param_dtype, "head")(frames)
    return logits.astype(jnp.float32), {"frames": frames}
