"""Attention's config checks, raised as the module is traced (as in the jax.eval_shape of a run's state): no array
is allocated, whatever the shapes. The messages are compared whole: the scripts print them as they are."""
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from mmjax import errors
from mmjax.nn import MultiHeadAttention


class _Tower(nn.Module):
  """Attention inside a model, as it always is: the message names its path."""
  num_heads: int

  @nn.compact
  def __call__(self, x):
    return MultiHeadAttention(self.num_heads, name="attn")(x, x)


def _trace_error(num_heads: int, length: int, width: int) -> str:
  """The message of the ConfigError an abstract init over [1, length, width] inputs raises."""
  inputs = jax.ShapeDtypeStruct((1, length, width), jnp.float32)
  with pytest.raises(errors.ConfigError) as raised:
    jax.eval_shape(lambda x: _Tower(num_heads).init(jax.random.PRNGKey(0), x), inputs)
  return str(raised.value)


@pytest.mark.parametrize("num_heads", [0, -2, 5])
def test_heads_that_do_not_divide_the_width_name_the_counts_that_do(num_heads):
  assert _trace_error(num_heads, 4, 12) == (f"Attention width 12 is not divisible by num_heads={num_heads} "
                                            "(attn/key); heads that divide it: [1, 2, 3, 4, 6, 12].")


def test_a_zero_width_is_an_error():
  assert _trace_error(2, 4, 0) == "Attention width 0 (attn/key) must be positive."


def test_scores_larger_than_memory_for_one_example_are_a_range_error_before_any_allocation():
  jax.eval_shape(lambda: _Tower(2).init(jax.random.PRNGKey(0), jnp.zeros((1, 512, 8))))  # 2 MiB of scores: fine.
  assert re.fullmatch(
      r"Attention over 1,000,000 x 1,000,000 positions \(attn\) needs 7,451 GiB for the scores of a single example "
      r"\(2 heads, float32\), more than the [\d,]+ GiB of the (host's RAM|\w+ device); shorten the sequence \(e.g. "
      r"config.data.text_len, a max_len, or a larger patch\).", _trace_error(2, 1_000_000, 8))
