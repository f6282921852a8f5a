"""VQA accuracy, overall and per question type, next to the majority-answer baseline."""
from collections import Counter
from collections.abc import Sequence
from typing import Any

import ml_collections
import numpy as np

from mmjax import data as mmdata
from mmjax import errors
from mmjax.evaluators import reliance
from mmjax.evaluators.common import SplitEvaluator, predict_over


def vqa_accuracy(predicted: Sequence[str], answers: Sequence[str | None], question_types: np.ndarray,
                 type_names: Sequence[str]) -> dict[str, float]:
  """Exact-match accuracy overall and per question type ("accuracy/<type>"); one reference
  answer per question, so this is the VQA metric with a single annotator. A None answer is one no prediction
  can match (it counts as wrong)."""
  correct = np.array([p == a for p, a in zip(predicted, answers)], dtype=float)
  metrics = {"accuracy": float(correct.mean())}
  for index, name in enumerate(type_names):
    of_type = question_types == index
    if of_type.any():
      metrics[f"accuracy/{name}"] = float(correct[of_type].mean())
  return metrics


def majority_answers(answers: Sequence[str], question_types: Sequence[int]) -> dict[int, str]:
  """The most frequent answer per question type (ties: the first seen)."""
  counts: dict[int, Counter] = {}
  for answer, question_type in zip(answers, question_types):
    counts.setdefault(int(question_type), Counter())[answer] += 1
  return {question_type: counter.most_common(1)[0][0] for question_type, counter in counts.items()}


class VqaEvaluator(SplitEvaluator):
  """Answers every question of `split`, by decoding (`generate`) or over the answer set (`classify`).

  The baseline answers each question with its type's most frequent answer in the train split
  (the "prior" baseline of the VQA papers: `majority_accuracy`, `majority_accuracy/<type>`).

  Modality reliance (`reliance`, e.g. ("image", "question")): accuracy overall and per type again with that field
  zeroed or shuffled (`zeroed/image/accuracy/<type>`, `..._drop`; see mmjax.evaluators.reliance). With the image
  zeroed the model answers blind: `zeroed/image/accuracy/<type>` is its "blind" figure per question type, to set
  next to `majority_accuracy/<type>` (a blind model can at best learn the answer prior, which the majority
  baseline approximates); with the question zeroed it is left to guess what is asked.
  """

  headline = ("accuracy", "majority_accuracy")
  reports_reliance = True
  writes_examples = True  # {"question", "question_type", "answer", "predicted", "correct"} per question.

  def __init__(self, key: str, eval_config: ml_collections.ConfigDict, **kwargs):
    super().__init__(key, eval_config, **kwargs)
    if not {"generate", "classify"} & set(self.predict_fns):
      raise errors.ConfigError(f"The vqa evaluator needs a task that generates or classifies answers; this "
                               f"one predicts {sorted(self.predict_fns)}.")
    self.tokenizer = mmdata.get_tokenizer(self.data_config)
    names = mmdata.label_names(self.data_config)
    self.answer_names, self.type_names = names["answer_id"], names["question_type"]
    train = mmdata.field_values(self.data_config, "train", ("answer", "question_type"))
    self.majority = majority_answers(train["answer"], train["question_type"])

  def _predict(self, params, batch):
    if "generate" in self.predict_fns:
      return self.predict_fns["generate"](params, batch)
    return self.predict_fns["classify"](params, batch)

  def run(self, params, examples: list[dict[str, Any]] | None = None) -> dict[str, float]:
    predicts = reliance.ablated(lambda batch: self._predict(params, batch), self.reliance, self.key)
    outputs, fields = predict_over(self.batches(), predicts, self.to_device,
                                   keep=("answer_id", "answer", "question_type")
                                   + (("question",) if examples is not None else ()))
    # Answers are compared as the tokenizer writes them ("t-shirt" and a generated "t - shirt" are one answer).
    def canonical(text: str) -> str:
      return self.tokenizer.decode(self.tokenizer.encode(text))

    def answered(output: np.ndarray) -> list[str]:
      if "generate" in self.predict_fns:
        return [self.tokenizer.decode(ids) for ids in output]
      return [canonical(self.answer_names[i]) for i in output]

    # answer_id −1: an answer the train split never had (a folder dataset's): no class, but a decoder can say it,
    # unless the tokenizer cannot write it (an unknown word): then no prediction matches (None), where a generated
    # unknown token would otherwise "equal" it.
    answers = [canonical(self.answer_names[i]) if i >= 0
               else None if self.tokenizer.unk_id in tokens else self.tokenizer.decode(tokens)
               for i, tokens in zip(fields["answer_id"], fields["answer"])]
    types = fields["question_type"]
    predicted = {variant: answered(output) for variant, output in outputs.items()}
    metrics = reliance.report({variant: vqa_accuracy(texts, answers, types, self.type_names)
                               for variant, texts in predicted.items()})
    if examples is not None:
      questions = fields.get("question", [None] * len(answers))
      examples.extend({"question": None if question is None else self.tokenizer.decode(question),
                       "question_type": self.type_names[int(kind)], "answer": answer, "predicted": output,
                       "correct": output == answer}
                      for question, kind, answer, output in zip(questions, types, answers, predicted["clean"]))
    baseline = [canonical(self.majority.get(int(t), "")) for t in types]
    metrics.update({f"majority_{k}": v for k, v in vqa_accuracy(baseline, answers, types, self.type_names).items()})
    metrics["num_examples"] = float(len(answers))
    return metrics
