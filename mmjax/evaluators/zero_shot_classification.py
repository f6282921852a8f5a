"""Zero-shot classification of a dataset's label by prompt ensembles (CLIP), on every class or a subset, e.g.
classes held out of training; and the linear probe on the same frozen image features, its supervised yardstick."""
from __future__ import annotations

import ml_collections
import numpy as np

from mmjax import data as mmdata
from mmjax import errors
from mmjax.evaluators.common import SplitEvaluator, predict_over
from mmjax.evaluators.zero_shot import class_embeddings, zero_shot_accuracy


def class_names(data_config: ml_collections.ConfigDict, label: str, key: str) -> list[str]:
  """The names of `label`'s classes that `config.data.classes` keeps (all if it is empty), in id order."""
  names = mmdata.label_names(data_config).get(label)
  if names is None:
    raise errors.ConfigError(f"{key}.label={label!r} is not a label field of dataset {data_config.name!r}; its label "
                             f"fields: {sorted(mmdata.label_names(data_config))}.")
  kept = [name.strip() for name in (data_config.get("classes") or "").split(",") if name.strip()]
  return [name for name in names if not kept or name in kept]


def restricted(data_config: ml_collections.ConfigDict, classes: str) -> ml_collections.ConfigDict:
  """A copy of `data_config` whose split passes keep only `classes` ("" keeps the data config's own subset)."""
  copy = ml_collections.ConfigDict(data_config.to_dict())
  if classes:
    copy.classes = classes
  return copy


class ZeroShotClassificationEvaluator(SplitEvaluator):
  """Accuracy of argmax_c <image, class_c> over the `classes` of `label` (all if empty), each class embedded as
  the mean of its `templates` ("a photo of a {}.") filled with its name. Chance is 1 / number of classes."""

  headline = ("accuracy", "chance")

  def __init__(self, key: str, eval_config: ml_collections.ConfigDict, *, data_config: ml_collections.ConfigDict,
               **kwargs):
    super().__init__(key, eval_config, data_config=restricted(data_config, eval_config.get("classes", "")),
                     **kwargs)
    templates = list(eval_config.templates)
    if not templates or any("{}" not in template for template in templates):
      raise errors.ConfigError(f"config.evals.{key}.templates={templates!r} must be a non-empty list of strings "
                               "with a {} for the class name.")
    self.names = class_names(self.data_config, eval_config.label, f"config.evals.{key}")
    all_names = mmdata.label_names(self.data_config)[eval_config.label]
    self.class_ids = np.asarray([all_names.index(name) for name in self.names])
    self.prompts = [[template.format(name) for template in templates] for name in self.names]

  def run(self, params) -> dict[str, float]:
    image_emb, fields = predict_over(self.batches(), lambda b: self.predict_fns["embed_image"](params, b["image"]),
                                     self.to_device, keep=(self.config.label,))
    classes = class_embeddings(self.text_embedder(params), mmdata.get_tokenizer(self.data_config),
                               self.prompts, self.data_config.text_len)
    # Labels as positions in self.names (the split holds only those classes).
    labels = np.searchsorted(self.class_ids, fields[self.config.label])
    return {"accuracy": zero_shot_accuracy(image_emb, classes, labels), "chance": 1 / len(self.names),
            "num_examples": float(len(labels))}


class LinearProbeEvaluator(SplitEvaluator):
  """Multinomial logistic regression (scikit-learn) on the image tower's pooled features of the first
  `train_examples` of `train_split`, scored on `split`: what the frozen features support with supervision,
  next to what zero-shot reaches without it. Both passes keep only `classes` (all if empty)."""

  headline = ("accuracy",)

  def __init__(self, key: str, eval_config: ml_collections.ConfigDict, *, data_config: ml_collections.ConfigDict,
               **kwargs):
    super().__init__(key, eval_config, data_config=restricted(data_config, eval_config.get("classes", "")),
                     **kwargs)
    count = mmdata.num_examples(self.data_config, eval_config.train_split)
    if not 0 < eval_config.train_examples <= count:
      raise errors.ConfigError(f"config.evals.{key}.train_examples={eval_config.train_examples} must be in "
                               f"[1, {count}] (the examples of {eval_config.train_split!r}).")

  def _features(self, params, split: str, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    batches = mmdata.eval_batches(self.data_config, split, batch_size=self.batch_size)
    if limit is not None:
      wanted = -(-limit // self.batch_size)
      batches = (batch for _, batch in zip(range(wanted), batches))
    features, fields = predict_over(batches, lambda b: self.predict_fns["image_features"](params, b["image"]),
                                    self.to_device, keep=(self.config.label,))
    return features[:limit], fields[self.config.label][:limit]

  def run(self, params) -> dict[str, float]:
    from sklearn import linear_model, pipeline, preprocessing  # Here: importing scikit-learn takes a second.

    train_x, train_y = self._features(params, self.config.train_split, self.config.train_examples)
    test_x, test_y = self._features(params, self.split)
    probe = pipeline.make_pipeline(preprocessing.StandardScaler(),
                                   linear_model.LogisticRegression(C=self.config.get("l2_inverse", 1.0),
                                                                   max_iter=1000))
    probe.fit(train_x, train_y)
    return {"accuracy": float(probe.score(test_x, test_y)), "train_examples": float(len(train_y)),
            "num_examples": float(len(test_y))}
