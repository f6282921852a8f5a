"""The Transformer feed-forward block, and the MLP head that turns a vector into class scores."""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax import errors
from mmjax.nn.partitioning import dense


def _quick_gelu(x: jax.Array) -> jax.Array:
  return x * jax.nn.sigmoid(1.702 * x)


# The MLP nonlinearities of the checkpoints mmjax imports: "gelu" is the tanh approximation (ViT, big_vision,
# and every model trained here), "gelu_erf" the exact one (BERT), "quick_gelu" OpenAI CLIP's sigmoid one.
ACTIVATIONS = {
    "gelu": nn.gelu,
    "gelu_erf": lambda x: nn.gelu(x, approximate=False),
    "quick_gelu": _quick_gelu,
    "relu": nn.relu,
}


class MlpBlock(nn.Module):
  """Dense(mlp_dim) → activation (one of ACTIVATIONS) → Dense(D). x: [..., D] → [..., D]."""
  mlp_dim: int
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  activation: str = "gelu"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    features = x.shape[-1]
    activation = errors.lookup(ACTIVATIONS, self.activation, "activation")
    x = dense(self.mlp_dim, ("embed", "mlp"), self.dtype, self.param_dtype, "fc1")(x)
    x = nn.with_logical_constraint(activation(x), ("batch", "length", "mlp"))
    return dense(features, ("mlp", "embed"), self.dtype, self.param_dtype, "fc2")(x)


class ClassifierHead(nn.Module):
  """[B, D] → Dense(mlp_dim) → GELU → Dense(num_classes) → f32[B, num_classes]."""
  mlp_dim: int
  num_classes: int
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = dense(self.mlp_dim, ("embed", "mlp"), self.dtype, self.param_dtype, "hidden")(x)
    x = nn.with_logical_constraint(nn.gelu(x), ("batch", "mlp"))
    return dense(self.num_classes, ("mlp", None), self.dtype, self.param_dtype, "logits")(x).astype(jnp.float32)
