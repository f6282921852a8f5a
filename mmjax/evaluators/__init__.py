"""Evaluators as data: `config.evals.<key> = {name, split, every_steps, ...}`, `name` picking the evaluator."""
import ml_collections

from mmjax import data as mmdata
from mmjax import errors
from mmjax.evaluators.common import SplitEvaluator
from mmjax.evaluators.classification import ClassificationEvaluator, classification_metrics, score_metrics
from mmjax.evaluators.captioning import CaptioningEvaluator, caption_metrics, token_accuracy
from mmjax.evaluators.itm_retrieval import ItmRetrievalEvaluator, rerank
from mmjax.evaluators.retrieval import RetrievalEvaluator, recall_at_k
from mmjax.evaluators.speech import SpeechRecognitionEvaluator, error_rates
from mmjax.evaluators.vqa import VqaEvaluator, majority_answers, vqa_accuracy
from mmjax.evaluators.zero_shot import ZeroShotEvaluator, class_embeddings, class_prompts, zero_shot_accuracy
from mmjax.evaluators.zero_shot_classification import LinearProbeEvaluator, ZeroShotClassificationEvaluator

EVALUATORS = {"retrieval": RetrievalEvaluator, "zero_shot": ZeroShotEvaluator, "captioning": CaptioningEvaluator,
              "vqa": VqaEvaluator, "classification": ClassificationEvaluator,
              "zero_shot_classification": ZeroShotClassificationEvaluator, "linear_probe": LinearProbeEvaluator,
              "itm_retrieval": ItmRetrievalEvaluator, "speech_recognition": SpeechRecognitionEvaluator}


def build(key: str, eval_config: ml_collections.ConfigDict, *, data_config: ml_collections.ConfigDict,
          **kwargs) -> SplitEvaluator:
  """The evaluator of `config.evals.<key>`; its split is checked now, not at the first eval mid-run."""
  evaluator = errors.lookup(EVALUATORS, eval_config.name, "evaluator", f"config.evals.{key}.name")
  mmdata.num_examples(data_config, eval_config.split)  # Raises for a missing or empty split.
  return evaluator(key, eval_config, data_config=data_config, **kwargs)


__all__ = ["EVALUATORS", "SplitEvaluator", "build", "CaptioningEvaluator", "ClassificationEvaluator",
           "ItmRetrievalEvaluator", "LinearProbeEvaluator", "RetrievalEvaluator", "VqaEvaluator",
           "ZeroShotClassificationEvaluator", "ZeroShotEvaluator", "caption_metrics", "class_embeddings",
           "class_prompts", "classification_metrics", "majority_answers", "recall_at_k", "rerank", "score_metrics",
           "token_accuracy", "vqa_accuracy", "zero_shot_accuracy", "SpeechRecognitionEvaluator", "error_rates"]
