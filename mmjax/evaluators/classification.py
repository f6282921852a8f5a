"""Accuracy and macro-F1 of a classifier (and MAE, correlation and Acc-2 of its score), overall and per subset
of the examples, and how much it relies on each input modality."""
import ml_collections
import numpy as np

from mmjax import data as mmdata
from mmjax import errors
from mmjax.evaluators import reliance
from mmjax.evaluators.common import SplitEvaluator, predict_over


def classification_metrics(predicted: np.ndarray, labels: np.ndarray, num_classes: int,
                           classes: np.ndarray | None = None) -> dict[str, float]:
  """Accuracy and macro-F1 over all `num_classes` classes (a class never predicted nor present
  scores F1 = 0, so a classifier that ignores a class is not flattered by leaving it out), or over `classes`
  only: a subset of the examples that lacks a class by design (the sarcastic ones are never neutral) averages
  the F1 of the classes it has, and predicting a missing class still costs the true class its recall."""
  from sklearn import metrics as sk_metrics  # Here: importing scikit-learn takes most of a second.

  classes = np.arange(num_classes) if classes is None else classes
  return {"accuracy": float(np.mean(predicted == labels)),
          "macro_f1": float(sk_metrics.f1_score(labels, predicted, labels=classes, average="macro",
                                                zero_division=0.0))}


def score_metrics(predicted: np.ndarray, targets: np.ndarray) -> dict[str, float]:
  """The regression metrics of CMU-MOSI papers for a sentiment score: `score_mae` (mean absolute error),
  `score_corr` (Pearson's r; NaN when either side is constant, where it is undefined) and `acc2` (the sign of the
  predicted score against the target's, over the examples whose target is not 0: MOSI's non-neutral Acc-2;
  NaN when every target is 0)."""
  predicted, targets = np.asarray(predicted, np.float64), np.asarray(targets, np.float64)
  constant = predicted.std() == 0 or targets.std() == 0
  polar = targets != 0
  return {"score_mae": float(np.mean(np.abs(predicted - targets))),
          "score_corr": float("nan") if constant else float(np.corrcoef(predicted, targets)[0, 1]),
          "acc2": float(np.mean((predicted[polar] > 0) == (targets[polar] > 0))) if polar.any() else float("nan")}


class ClassificationEvaluator(SplitEvaluator):
  """`accuracy` and `macro_f1` of the task's `classify` on `split` against `label`.

  Optional keys: `score`, a float batch field the task's `label_and_score` regresses (then also `score_mae`,
  `score_corr` and `acc2`, see `score_metrics`); `subsets`, an integer label field that splits the examples
  (e.g. "subset": sincere / sarcastic), whose every metric is also reported per value as `<name>/<metric>`,
  e.g. `sarcastic/accuracy` (a subset's macro-F1 averages the classes its examples have).

  Modality reliance: for each batch field in `reliance` (e.g. ("image", "audio", "text")), the same metrics with
  that field zeroed and with it shuffled across the batch, as `zeroed/<field>/accuracy` and
  `zeroed/<field>/accuracy_drop` (clean − ablated), likewise for `shuffled`, every other metric and every subset
  (`zeroed/text/sarcastic/accuracy_drop`; see mmjax.evaluators.reliance).
  """

  headline = ("accuracy", "macro_f1")
  reports_reliance = True

  def __init__(self, key: str, eval_config: ml_collections.ConfigDict, **kwargs):
    super().__init__(key, eval_config, **kwargs)
    # Optional keys: only evaluations with a score or subsets (configs/sentiment.py) set them.
    self.score = eval_config.get("score", "")
    self.subsets = eval_config.get("subsets", "")
    predict = "label_and_score" if self.score else "classify"
    if predict not in self.predict_fns:
      raise errors.ConfigError(f"The classification evaluator{' with a score' if self.score else ''} needs a task "
                               f"that predicts {predict!r}; this one predicts {sorted(self.predict_fns)}"
                               f"{' (set config.task.score)' if self.score else ''}.")
    self.predict = self.predict_fns[predict]
    self.label = eval_config.label
    names = mmdata.label_names(self.data_config)
    for what, field in (("label", self.label), ("subsets", self.subsets)):
      if field and field not in names:
        raise errors.ConfigError(f"config.evals.{key}.{what}={field!r} is not a label field of the dataset; "
                                 f"its label fields: {sorted(names)}.")
    self.num_classes = len(names[self.label])
    self.subset_names = names[self.subsets] if self.subsets else []

  def _metrics(self, output, fields: dict[str, np.ndarray], rows: np.ndarray, subset: bool) -> dict[str, float]:
    predicted, labels = (output["label"] if self.score else output)[rows], fields[self.label][rows]
    metrics = classification_metrics(predicted, labels, self.num_classes, np.unique(labels) if subset else None)
    if self.score:
      metrics.update(score_metrics(output["score"][rows], fields[self.score][rows]))
    return metrics

  def run(self, params) -> dict[str, float]:
    predicts = reliance.ablated(lambda batch: self.predict(params, batch), self.reliance, self.key)
    keep = tuple(field for field in (self.label, self.score, self.subsets) if field)
    outputs, fields = predict_over(self.batches(), predicts, self.to_device, keep=keep)
    groups = {"": np.ones(len(fields[self.label]), bool)}
    groups.update({f"{name}/": fields[self.subsets] == i for i, name in enumerate(self.subset_names)
                   if np.any(fields[self.subsets] == i)})
    metrics = reliance.report({variant: {prefix + name: value for prefix, rows in groups.items()
                                         for name, value in self._metrics(output, fields, rows, bool(prefix)).items()}
                               for variant, output in outputs.items()})
    metrics["num_examples"] = float(len(fields[self.label]))
    metrics.update({f"{prefix}num_examples": float(rows.sum()) for prefix, rows in groups.items() if prefix})
    return metrics
