"""Checks imported weights against the parameters a module was initialised with, key by key."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax
import flax.linen as nn
import numpy as np

from mmjax import errors


def fit(expected: Mapping[str, Any], imported: Mapping[str, Any], source: str) -> dict[str, Any]:
  """`imported` (a nested dict of arrays, the same tree as `expected`) as float32 numpy arrays, after checking
  that every parameter of `expected` is imported with its shape and nothing else is.

  `expected` is the module's freshly initialised params (arrays or ShapeDtypeStructs, boxed with their logical
  axes or not); `source` names the
  checkpoint in the error, which names the first parameter that is missing, extra or of another shape.
  """
  want = flax.traverse_util.flatten_dict(flax.core.unfreeze(nn.unbox(expected)), sep="/")
  have = flax.traverse_util.flatten_dict(dict(imported), sep="/")
  missing, extra = sorted(set(want) - set(have)), sorted(set(have) - set(want))
  if missing:
    raise errors.ConfigError(f"{source} has no weights for {missing[0]} (and {len(missing) - 1} more) of the "
                             "configured module; configure the module the checkpoint was trained as.")
  if extra:
    raise errors.ConfigError(f"{source} has weights for {extra[0]} (and {len(extra) - 1} more), which the "
                             "configured module does not have; configure the module the checkpoint was trained as.")
  for name, value in want.items():
    if tuple(np.shape(value)) != tuple(np.shape(have[name])):
      raise errors.ConfigError(f"{source}: {name} is {tuple(np.shape(have[name]))} in the checkpoint but "
                               f"{tuple(np.shape(value))} in the configured module; configure the module the "
                               "checkpoint was trained as (its width, depth, heads, vocabulary).")
  return flax.traverse_util.unflatten_dict({k: np.asarray(v, np.float32) for k, v in have.items()}, sep="/")
