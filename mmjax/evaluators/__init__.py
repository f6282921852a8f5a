"""Evaluators as data: `config.evals.<name> = {type, split, every_steps, ...}`."""
from mmjax.evaluators.retrieval import RetrievalEvaluator, recall_at_k
from mmjax.evaluators.zero_shot import ZeroShotEvaluator, class_prompts, zero_shot_accuracy

EVALUATORS = {"retrieval": RetrievalEvaluator, "zero_shot": ZeroShotEvaluator}


def build(eval_config, **kwargs):
  if eval_config.type not in EVALUATORS:
    raise ValueError(f"Unknown evaluator type {eval_config.type!r}; known: {sorted(EVALUATORS)}.")
  return EVALUATORS[eval_config.type](eval_config, **kwargs)


__all__ = ["EVALUATORS", "build", "RetrievalEvaluator", "ZeroShotEvaluator", "recall_at_k",
           "class_prompts", "zero_shot_accuracy"]
