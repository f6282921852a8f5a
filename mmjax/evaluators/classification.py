"""Accuracy and macro-F1 of a classifier, and how much it relies on each input modality."""
from collections.abc import Callable, Mapping, Sequence

import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from mmjax import data as mmdata
from mmjax import errors
from mmjax.evaluators.common import SplitEvaluator, numeric_fields

Batch = Mapping[str, np.ndarray]


def classification_metrics(predicted: np.ndarray, labels: np.ndarray, num_classes: int) -> dict[str, float]:
  """Accuracy and macro-F1 over all `num_classes` classes (a class never predicted nor present
  scores F1 = 0, so a classifier that ignores a class is not flattered by leaving it out)."""
  from sklearn import metrics as sk_metrics  # Here: importing scikit-learn takes most of a second.

  return {"accuracy": float(np.mean(predicted == labels)),
          "macro_f1": float(sk_metrics.f1_score(labels, predicted, labels=np.arange(num_classes), average="macro",
                                                zero_division=0.0))}


def zeroed(batch: Batch, field: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
  """`field` replaced by zeros: a black image, silence, or all-padding text (the modality is missing)."""
  del rng
  return {**batch, field: np.zeros_like(batch[field])}


def shuffled(batch: Batch, field: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
  """`field` permuted across the batch's valid rows: the modality is still there and looks
  real, but belongs to another example, which breaks its link to the label."""
  valid = np.flatnonzero(batch["valid"])
  values = batch[field].copy()
  values[valid] = batch[field][rng.permutation(valid)]
  return {**batch, field: values}


ABLATIONS: dict[str, Callable[[Batch, str, np.random.Generator], dict[str, np.ndarray]]] = {
    "zeroed": zeroed, "shuffled": shuffled}


class ClassificationEvaluator(SplitEvaluator):
  """`accuracy` and `macro_f1` of the task's `classify` on `split` against `label`.

  Modality reliance: for each batch field in `reliance` (e.g. ("image", "audio", "text")), the
  same metrics with that field zeroed and with it shuffled across the batch, reported as
  `zeroed/<field>/accuracy` and `zeroed/<field>/accuracy_drop` (clean − ablated), and likewise
  for `shuffled` and macro_f1. A large drop means the model uses that modality; shuffling also
  catches a model that only uses a modality's presence. The shuffle is seeded, so reruns agree.
  """

  headline = ("accuracy", "macro_f1")

  def __init__(self, key: str, eval_config: ml_collections.ConfigDict, **kwargs):
    super().__init__(key, eval_config, **kwargs)
    if "classify" not in self.predict_fns:
      raise errors.ConfigError(f"The classification evaluator needs a task that classifies; this one predicts "
                               f"{sorted(self.predict_fns)}.")
    self.label = eval_config.label
    names = mmdata.label_names(self.data_config)
    if self.label not in names:
      raise errors.ConfigError(f"config.evals.{key}.label={self.label!r} is not a label field of the dataset; "
                               f"its label fields: {sorted(names)}.")
    self.num_classes = len(names[self.label])
    self.reliance: Sequence[str] = tuple(eval_config.reliance)

  def run(self, params) -> dict[str, float]:
    variants = [("clean", None, None)] + [(kind, field, fn) for kind, fn in ABLATIONS.items()
                                          for field in self.reliance]
    rng = np.random.default_rng(0)
    outputs = {(kind, field): [] for kind, field, _ in variants}
    fields = []
    for batch in self.batches():
      local = numeric_fields(batch)
      missing = sorted({self.label, *self.reliance} - set(local))
      if missing:
        raise errors.ConfigError(f"config.evals.{self.key}: batches have no field(s) {missing}; fields are "
                                 f"{sorted(local)}. Fix `label` / `reliance` in the eval config.")
      for kind, field, ablate in variants:
        inputs = local if ablate is None else ablate(local, field, rng)
        outputs[kind, field].append(np.asarray(self.predict_fns["classify"](params, self.to_device(inputs))))
      fields.append(multihost_utils.process_allgather({k: local[k] for k in (self.label, "valid")}, tiled=True))
    if not fields:
      raise errors.InputError("The evaluation split produced no batches; check config.evals and the data split.")
    valid = np.concatenate([f["valid"] for f in fields]).astype(bool)
    labels = np.concatenate([f[self.label] for f in fields])[valid]
    results = {}
    for (kind, field), predicted in outputs.items():
      scores = classification_metrics(np.concatenate(predicted)[valid], labels, self.num_classes)
      if kind == "clean":
        results.update(scores)
      else:
        for name, value in scores.items():
          results[f"{kind}/{field}/{name}"] = value
          results[f"{kind}/{field}/{name}_drop"] = results[name] - value
    results["num_examples"] = float(len(labels))
    return results
