"""Evaluators as data: `config.evals.<name> = {type, split, every_steps, ...}`."""
from mmjax import data as mmdata
from mmjax import errors
from mmjax.evaluators.classification import ClassificationEvaluator, classification_metrics
from mmjax.evaluators.captioning import CaptioningEvaluator, caption_metrics, token_accuracy
from mmjax.evaluators.retrieval import RetrievalEvaluator, recall_at_k
from mmjax.evaluators.vqa import VqaEvaluator, majority_answers, vqa_accuracy
from mmjax.evaluators.zero_shot import ZeroShotEvaluator, class_prompts, zero_shot_accuracy

EVALUATORS = {"retrieval": RetrievalEvaluator, "zero_shot": ZeroShotEvaluator, "captioning": CaptioningEvaluator,
              "vqa": VqaEvaluator, "classification": ClassificationEvaluator}


def build(eval_config, *, data_config, **kwargs):
  """The evaluator of `eval_config`; its split is checked now, not at the first eval mid-run."""
  if eval_config.type not in EVALUATORS:
    raise errors.ConfigError(f"Unknown evaluator type {eval_config.type!r}; known: {sorted(EVALUATORS)}.")
  mmdata.num_examples(data_config, eval_config.split)  # Raises for a missing or empty split.
  return EVALUATORS[eval_config.type](eval_config, data_config=data_config, **kwargs)


__all__ = ["EVALUATORS", "build", "CaptioningEvaluator", "ClassificationEvaluator", "RetrievalEvaluator",
           "VqaEvaluator", "ZeroShotEvaluator", "caption_metrics", "class_prompts", "classification_metrics",
           "majority_answers", "recall_at_k", "token_accuracy", "vqa_accuracy", "zero_shot_accuracy"]
