"""Zero-shot classification of a scene attribute by nearest class-prompt embedding."""
import itertools
import string
from collections.abc import Callable

import ml_collections
import numpy as np

from mmjax import data as mmdata
from mmjax import errors
from mmjax.data.tokenizer import Tokenizer, tokenize_to_length
from mmjax.evaluators.common import SplitEvaluator, predict_over


def class_prompts(template: str, attribute: str, classes: dict[str, list[str]]) -> list[list[str]]:
  """Prompts per class of `attribute`: the template filled with that class and with every
  combination of the other attributes it names (CLIP-style prompt ensembling).

  class_prompts("a {size} {colour} thing", "colour", {"colour": ["red", "blue"], "size": ["small"]})
  → [["a small red thing"], ["a small blue thing"]]
  """
  fields = [name for _, name, _, _ in string.Formatter().parse(template) if name]
  if attribute not in fields:
    raise errors.ConfigError(f"The zero-shot template {template!r} has no {{{attribute}}} placeholder.")
  unknown = set(fields) - set(classes)
  if unknown:
    raise errors.ConfigError(f"Template {template!r} names {sorted(unknown)}; known attributes: {sorted(classes)}.")
  others = [f for f in fields if f != attribute]
  prompts = []
  for value in classes[attribute]:
    combos = itertools.product(*(classes[f] for f in others))
    prompts.append([template.format(**{attribute: value}, **dict(zip(others, combo))) for combo in combos])
  return prompts


def class_embeddings(embed_text: Callable[[np.ndarray], np.ndarray], tokenizer: Tokenizer, prompts: list[list[str]],
                     text_len: int) -> np.ndarray:
  """Unit class embeddings f32[C, D]: the mean of each class's prompt embeddings (CLIP's prompt ensembling),
  re-normalised. `embed_text` maps int tokens [N, text_len] to unit embeddings [N, D]."""
  flat = [prompt for class_prompts_ in prompts for prompt in class_prompts_]
  emb = embed_text(np.stack([tokenize_to_length(tokenizer, prompt, text_len) for prompt in flat]))
  per_class = np.split(emb, np.cumsum([len(p) for p in prompts])[:-1])
  means = np.stack([e.mean(0) for e in per_class])
  return means / np.linalg.norm(means, axis=1, keepdims=True)


def zero_shot_accuracy(image_emb: np.ndarray, class_emb: np.ndarray, labels: np.ndarray) -> float:
  """Top-1 accuracy of argmax_c <image, class_c>. image_emb [N, D], class_emb [C, D], labels [N]."""
  return float(((image_emb @ class_emb.T).argmax(1) == labels).mean())


class ZeroShotEvaluator(SplitEvaluator):
  """Classifies `attribute` of the single object in one-object scenes of `split`."""

  headline = ("accuracy", "chance")

  def __init__(self, key: str, eval_config: ml_collections.ConfigDict, **kwargs):
    super().__init__(key, eval_config, **kwargs)
    # Built now so that a bad template or attribute fails before training, not at the first eval.
    self.prompts = class_prompts(eval_config.template, eval_config.attribute, mmdata.label_names(self.data_config))

  def run(self, params) -> dict[str, float]:
    attribute, prompts = self.config.attribute, self.prompts
    image_emb, fields = predict_over(
        self.batches(), lambda b: self.predict_fns["embed_image"](params, b["image"]), self.to_device)
    single = fields["num_objects"] == 1
    if not single.any():
      raise errors.InputError(f"Split {self.config.split!r} has no one-object scenes to classify.")
    labels = fields[attribute][single, 0]
    classes = class_embeddings(self.text_embedder(params), mmdata.get_tokenizer(self.data_config), prompts,
                               self.data_config.text_len)
    accuracy = zero_shot_accuracy(image_emb[single], classes, labels)
    return {"accuracy": accuracy, "chance": 1 / len(prompts), "num_examples": float(single.sum())}
