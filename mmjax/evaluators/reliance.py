"""Modality reliance: an evaluator's metrics again with one input field of the batch zeroed or shuffled.

An evaluator with `config.evals.<key>.reliance` (batch fields, e.g. ("image", "question")) runs its predict
function on every batch clean and once per ablation and field, in the same pass (`ablated` → predict_over),
and reports each metric `m` of each ablation also as `<kind>/<field>/m` and `<kind>/<field>/m_drop`
(clean − ablated; `report`). A large drop means the model uses that field. Zeroing asks what the model does
without the modality; shuffling keeps it realistic but takes it from another example, which also catches a model
that only uses the modality's presence or its statistics.
"""
import functools
import zlib
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from mmjax import errors
from mmjax.evaluators.common import Batch, Predict, Prepared


def zeroed(batch: Batch, field: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
  """`field` replaced by zeros: a black image, silence, or all-padding text (the modality is missing)."""
  del rng
  return {**batch, field: np.zeros_like(batch[field])}


def shuffled(batch: Batch, field: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
  """`field` permuted across the batch's valid rows (padding rows stay put): the modality is still there and
  looks real, but belongs to another example, which breaks its link to the answer."""
  valid = np.flatnonzero(batch["valid"])
  values = batch[field].copy()
  values[valid] = batch[field][rng.permutation(valid)]
  return {**batch, field: values}


ABLATIONS: dict[str, Callable[[Batch, str, np.random.Generator], dict[str, np.ndarray]]] = {
    "zeroed": zeroed, "shuffled": shuffled}


def _ablate(batch: Batch, *, kind: str, field: str, rng: np.random.Generator, key: str) -> dict[str, np.ndarray]:
  if field not in batch:
    raise errors.ConfigError(f"config.evals.{key}.reliance names {field!r}, which the batches lack; their "
                             f"fields: {sorted(batch)}.")
  return ABLATIONS[kind](batch, field, rng)


def ablated(predict: Predict, fields: Sequence[str], key: str, seed: int = 0) -> dict[str, Predict | Prepared]:
  """{"clean": predict, "<kind>/<field>": predict of the batch with `field` ablated by ABLATIONS[kind], ...}
  for predict_over; `key` is the eval's (config.evals.<key>), named when the batches lack a field.

  Every ablation draws from its own generator seeded by (seed, field), made here: each call (one eval) sees the
  same permutations, whatever the other fields, on every rerun and every process. A shuffle permutes the valid
  rows of this process's local batch, the rows it holds: with several processes, examples trade their field
  within a process's share of the global batch, never across processes.
  """
  variants: dict[str, Predict | Prepared] = {"clean": predict}
  for kind in ABLATIONS:
    for field in fields:
      rng = np.random.default_rng([seed, zlib.crc32(field.encode())])  # crc32: Python's str hash varies per run.
      variants[f"{kind}/{field}"] = Prepared(
          functools.partial(_ablate, kind=kind, field=field, rng=rng, key=key), predict)
  return variants


def report(scores: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
  """The metrics of the variants `ablated` names, {"clean": {m: value}, "<kind>/<field>": {m: value}, ...} →
  {m: clean value, "<kind>/<field>/m": ablated value, "<kind>/<field>/m_drop": clean − ablated, ...}."""
  clean = scores["clean"]
  metrics = dict(clean)
  for variant, ablated_scores in scores.items():
    if variant != "clean":
      for name, value in ablated_scores.items():
        metrics[f"{variant}/{name}"] = value
        metrics[f"{variant}/{name}_drop"] = clean[name] - value
  return metrics
