"""Relation Network fusion: an MLP over every pair of one modality's tokens, conditioned on the others."""
from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax import errors
from mmjax.models.fusion.base import Fusion, FusionOutput, concatenated, pooled_means, pooled_vector


class RelationFusion(Fusion):
  """Relation Network (Santoro et al. 2017, the Sort-of-CLEVR and CLEVR model) as a fusion.

  The tokens of the `objects` modalities (comma-separated names; "" = every modality) are the objects; the
  masked means of the other modalities' tokens, concatenated, are the condition c (e.g. the question).
  g = `depth` layers of Dense(pair_dim) → ReLU runs on [o_i, o_j, c] for every ordered pair of valid
  objects; pooled = Dense(width) of the mean of g over those pairs.

  Why it is in the zoo: a question such as "is the red circle left of the blue square?" needs two objects
  found by what they look like and then their positions compared. An attention fusion has to learn to
  select both objects from the answer alone; g sees every pair of objects at once, with the question,
  so comparing two objects is one MLP's job. The first layer is computed as W_i o_i + W_j o_j + W_c c, one
  matrix product per token instead of per pair; the later layers run on all N² pairs, so keep the objects
  few (the 9 patches and the [CLS] of a ViT at 48 px / 16: 100 pairs), and g narrower than a Transformer's
  MLP (`pair_dim`; the paper's Sort-of-CLEVR g has 256 units).
  """
  objects: str = ""
  pair_dim: int = 256

  def __post_init__(self):
    if self.depth < 1:
      raise errors.ConfigError(f"relation fusion depth={self.depth}: g needs at least one layer (fusion_depth ≥ 1).")
    super().__post_init__()

  @nn.compact
  def __call__(self, tokens: Mapping[str, jax.Array], masks: Mapping[str, jax.Array]) -> FusionOutput:
    names, token_list, mask_list = self.inputs(tokens, masks)
    wanted = [name for name in self.objects.split(",") if name] or names
    unknown = sorted(set(wanted) - set(names))
    if unknown:
      raise errors.ConfigError(f"fusion_options.objects names {unknown}, which this model does not read; name "
                               f"some of {names}, comma-separated (\"\" = all of them).")
    is_object = [name in wanted for name in names]
    objects, valid = concatenated([x for x, o in zip(token_list, is_object) if o],
                                  [m for m, o in zip(mask_list, is_object) if o])
    hidden = (self.dense(self.pair_dim, ("embed", "mlp"), "g_first")(objects)[:, :, None]
              + self.dense(self.pair_dim, ("embed", "mlp"), "g_second")(objects)[:, None, :])
    condition = [x for x, o in zip(pooled_means(token_list, mask_list), is_object) if not o]
    if condition:
      hidden = hidden + self.dense(self.pair_dim, (None, "mlp"), "g_condition")(
          jnp.concatenate(condition, -1))[:, None, None]
    hidden = nn.relu(nn.with_logical_constraint(hidden, ("batch", None, None, "mlp")))
    for i in range(1, self.depth):
      hidden = nn.relu(self.dense(self.pair_dim, (None, "mlp"), f"g_{i}")(hidden))
    pairs = (valid[:, :, None] & valid[:, None, :]).astype(hidden.dtype)
    count = jnp.maximum(pairs.sum((1, 2)), 1.0)[:, None]
    relations = jnp.einsum("bijh,bij->bh", hidden, pairs) / count
    return FusionOutput(pooled=pooled_vector(self.dense(self.width, ("mlp", "embed"), "f_in")(relations)))
