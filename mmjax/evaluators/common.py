"""What every evaluator shares: one pass over a split through jitted predict functions."""
import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from mmjax import data as mmdata
from mmjax import errors

Batch = Mapping[str, np.ndarray]
# A device batch (global jax.Arrays, see `to_device`) → outputs [B, ...] of its rows.
Predict = Callable[[dict[str, jax.Array]], Any]


@dataclasses.dataclass(frozen=True)
class Prepared:
  """`predict` of the batch `prepare` makes from this process's host rows (numeric fields and `valid`), before
  they become global arrays: for input changes only the host can make, such as permuting this process's rows
  (mmjax.evaluators.reliance)."""
  prepare: Callable[[Batch], Batch]
  predict: Predict


def numeric_fields(batch: Batch) -> dict[str, np.ndarray]:
  """Drops string fields (captions), which cannot become jax.Arrays."""
  return {k: v for k, v in batch.items() if np.asarray(v).dtype.kind in "biuf"}


def process_batches(rows: Mapping[str, np.ndarray], batch_size: int) -> list[dict[str, np.ndarray]]:
  """This process's batches of `rows` that every process holds in full (e.g. prompts built on
  the host), with a `valid` mask: process p feeds rows [p·b, (p+1)·b) of each global batch of
  b·process_count rows, so `predict_over` returns outputs for `rows` in their order, once."""
  count = len(next(iter(rows.values())))
  global_batch = batch_size * jax.process_count()
  padded = -count % global_batch
  rows = {**{k: np.pad(v, [(0, padded)] + [(0, 0)] * (v.ndim - 1)) for k, v in rows.items()},
          "valid": np.arange(count + padded) < count}
  start = jax.process_index() * batch_size
  return [{k: v[offset + start:offset + start + batch_size] for k, v in rows.items()}
          for offset in range(0, count + padded, global_batch)]


def predict_over(batches: Iterable[Batch], predicts: Predict | Mapping[str, Predict | Prepared],
                 to_device: Callable[[Batch], dict[str, jax.Array]],
                 keep: Sequence[str] | None = None) -> tuple[Any, dict[str, np.ndarray]]:
  """Runs `predicts` on every batch and keeps the valid rows.

  `predicts` is one function of a device batch (`to_device` of this process's numeric rows), or a dict of them
  (and of `Prepared` ones), all run on each batch in a single pass over the split. Returns (outputs, fields):
  outputs [N, ...] of the one function, or {name: outputs [N, ...]} of the dict; fields are the numeric batch
  fields of the same N examples as the batches hold them (only those named in `keep`, if given: a split's
  224×224 images would otherwise all be held in memory), gathered over processes in the same order as the
  global batch.
  """
  named = {None: predicts} if callable(predicts) else predicts
  # A plain function sees the rows as they are (`dict`: a copy of them).
  steps = {name: step if isinstance(step, Prepared) else Prepared(dict, step) for name, step in named.items()}
  outputs, fields = {name: [] for name in steps}, []
  for batch in batches:
    local = numeric_fields(batch)
    for name, step in steps.items():
      outputs[name].append(_to_host(step.predict(to_device(step.prepare(local)))))
    kept = local if keep is None else {k: v for k, v in local.items() if k in keep or k == "valid"}
    fields.append(multihost_utils.process_allgather(kept, tiled=True))
  if not fields:
    raise errors.InputError("The evaluation split produced no batches; check config.evals and the data split.")
  gathered = {k: np.concatenate([f[k] for f in fields]) for k in fields[0]}
  valid = gathered.pop("valid").astype(bool)
  results = {name: _valid_rows(chunks, valid) for name, chunks in outputs.items()}
  return results[None] if callable(predicts) else results, {k: v[valid] for k, v in gathered.items()}


def _to_host(output: Any) -> np.ndarray | dict[str, np.ndarray]:
  return {k: np.asarray(v) for k, v in output.items()} if isinstance(output, Mapping) else np.asarray(output)


def _valid_rows(chunks: list[Any], valid: np.ndarray) -> np.ndarray | dict[str, np.ndarray]:
  if isinstance(chunks[0], Mapping):
    return {k: np.concatenate([chunk[k] for chunk in chunks])[valid] for k in chunks[0]}
  return np.concatenate(chunks)[valid]


class SplitEvaluator:
  """The base of every evaluator: one `config.evals.<key>` block (`self.config`, whose `split`
  it reads), the data config, the task's jitted predict functions, the per-process batch size and
  the function that makes global device batches. Subclasses implement `run(params) -> {metric: value}`;
  `headline` names the metrics the train loop shows after each eval. Those that set `reports_reliance` also
  report their metrics with each batch field of `reliance` (e.g. ("image", "text")) ablated
  (mmjax.evaluators.reliance); for the others `reliance` must be empty."""
  headline: tuple[str, ...] = ()
  reports_reliance: bool = False
  # Those that set this take `run(params, examples)`: given a list, they append one JSON-able record per example of
  # the split, in split order (its reference, the model's output, whether they match), for error analysis.
  writes_examples: bool = False

  def __init__(self, key: str, eval_config: ml_collections.ConfigDict, *, data_config: ml_collections.ConfigDict,
               predict_fns: Mapping[str, Callable], batch_size: int, to_device: Callable):
    self.key = key
    self.config = eval_config
    self.split = eval_config.split
    self.data_config = data_config
    self.predict_fns = predict_fns
    self.batch_size = batch_size
    self.to_device = to_device
    reliance = eval_config.get("reliance", ())
    if isinstance(reliance, str) or not all(isinstance(field, str) for field in reliance):
      raise errors.ConfigError(f"config.evals.{key}.reliance={reliance!r} must be a list of batch fields, e.g. "
                               "('image', 'text').")
    if reliance and not self.reports_reliance:
      raise errors.ConfigError(f"config.evals.{key}.reliance={tuple(reliance)}: {type(self).__name__} does not "
                               "report modality reliance; remove `reliance`.")
    self.reliance: tuple[str, ...] = tuple(reliance)

  def run(self, params) -> dict[str, float]:
    raise NotImplementedError

  def text_embedder(self, params) -> Callable[[np.ndarray], np.ndarray]:
    """int tokens [N, L] (the same on every process, e.g. class prompts) → the model's text embeddings [N, D]."""
    def embed(tokens: np.ndarray) -> np.ndarray:
      return predict_over(process_batches({"text": tokens}, self.batch_size),
                          lambda b: self.predict_fns["embed_text"](params, b["text"]), self.to_device)[0]
    return embed

  def batches(self) -> Iterator[dict[str, np.ndarray]]:
    """One pass over this process's shard of the split (see mmjax.data.eval_batches)."""
    return mmdata.eval_batches(self.data_config, self.split, batch_size=self.batch_size)
