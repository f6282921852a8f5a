"""Accuracy and macro-F1 of a classifier, and how much it relies on each input modality."""
import ml_collections
import numpy as np

from mmjax import data as mmdata
from mmjax import errors
from mmjax.evaluators import reliance
from mmjax.evaluators.common import SplitEvaluator, predict_over


def classification_metrics(predicted: np.ndarray, labels: np.ndarray, num_classes: int) -> dict[str, float]:
  """Accuracy and macro-F1 over all `num_classes` classes (a class never predicted nor present
  scores F1 = 0, so a classifier that ignores a class is not flattered by leaving it out)."""
  from sklearn import metrics as sk_metrics  # Here: importing scikit-learn takes most of a second.

  return {"accuracy": float(np.mean(predicted == labels)),
          "macro_f1": float(sk_metrics.f1_score(labels, predicted, labels=np.arange(num_classes), average="macro",
                                                zero_division=0.0))}


class ClassificationEvaluator(SplitEvaluator):
  """`accuracy` and `macro_f1` of the task's `classify` on `split` against `label`.

  Modality reliance: for each batch field in `reliance` (e.g. ("image", "audio", "text")), the same metrics with
  that field zeroed and with it shuffled across the batch, as `zeroed/<field>/accuracy` and
  `zeroed/<field>/accuracy_drop` (clean − ablated), likewise for `shuffled` and macro_f1 (see
  mmjax.evaluators.reliance).
  """

  headline = ("accuracy", "macro_f1")
  reports_reliance = True

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

  def run(self, params) -> dict[str, float]:
    predicts = reliance.ablated(lambda batch: self.predict_fns["classify"](params, batch), self.reliance, self.key)
    outputs, fields = predict_over(self.batches(), predicts, self.to_device, keep=(self.label,))
    labels = fields[self.label]
    metrics = reliance.report({variant: classification_metrics(predicted, labels, self.num_classes)
                               for variant, predicted in outputs.items()})
    metrics["num_examples"] = float(len(labels))
    return metrics
