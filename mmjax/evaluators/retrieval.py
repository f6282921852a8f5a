"""Image↔text retrieval recall@K."""
from collections.abc import Sequence

import ml_collections
import numpy as np

from mmjax import errors
from mmjax.evaluators import reliance
from mmjax.evaluators.common import SplitEvaluator, predict_over


def recall_at_k(image_emb: np.ndarray, text_emb: np.ndarray, groups: np.ndarray,
                ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
  """Recall@K of image→text and text→image retrieval over N paired items.

  Item i is (image i, text i). `groups[i]` identifies its caption: several images can share
  one caption (e.g. "a small red circle"), and a retrieved item counts as correct when its
  caption is the query's, since nothing in the text can tell such items apart.
  """
  similarity = image_emb @ text_emb.T
  hits = groups[None, :] == groups[:, None]  # hits[i, j]: image i and text j match.
  # Under a random ranking, R@1 is the fraction of candidates that share the query's caption.
  chance_r1 = float(hits.mean(axis=1).mean())
  metrics = {"chance_r1": chance_r1}
  for name, scores in (("i2t", similarity), ("t2i", similarity.T)):
    order = np.argsort(-scores, axis=1, kind="stable")
    metrics.update({f"{name}_r{k}": recall for k, recall in recall_of_ranking(order, hits, ks).items()})
  return metrics


def recall_of_ranking(order: np.ndarray, hits: np.ndarray, ks: Sequence[int] = (1, 5, 10)) -> dict[int, float]:
  """{K: recall@K} of rankings: order[q] lists query q's candidates best first (int[Q, C]) and hits[q, c] says
  whether candidate c matches query q (bool[Q, C]; every query has at least one)."""
  first_hit = np.take_along_axis(hits, order, axis=1).argmax(axis=1)
  return {k: float((first_hit < k).mean()) for k in ks}


class RetrievalEvaluator(SplitEvaluator):
  """R@1/5/10 both ways on a split; every example is a candidate (≥ 1000 on Shapes' test split).

  Modality reliance (`reliance`: "image" and/or "text"): the recalls again with the image embeddings made from
  zeroed / shuffled images against the clean texts' (`zeroed/image/i2t_r1`, ...), and with the text ablated
  against the clean images'; with its `_drop` (see mmjax.evaluators.reliance). Which captions count as a match
  stays that of the clean texts: a model that ignores the ablated modality keeps its recall.
  """

  headline = ("i2t_r1", "t2i_r1", "i2t_r5", "t2i_r5")
  reports_reliance = True

  def __init__(self, key: str, eval_config: ml_collections.ConfigDict, **kwargs):
    super().__init__(key, eval_config, **kwargs)
    unknown = sorted(set(self.reliance) - {"image", "text"})
    if unknown:
      raise errors.ConfigError(f"config.evals.{key}.reliance names {unknown}; retrieval ablates the towers' inputs "
                               "'image' and 'text' only.")

  def run(self, params) -> dict[str, float]:
    towers = {"image": lambda batch: self.predict_fns["embed_image"](params, batch["image"]),
              "text": lambda batch: self.predict_fns["embed_text"](params, batch["text"])}
    predicts = dict(towers)
    for field in self.reliance:  # Only the ablated tower runs again.
      predicts.update({name: predict for name, predict in reliance.ablated(towers[field], (field,), self.key).items()
                       if name != "clean"})
    embeddings, fields = predict_over(self.batches(), predicts, self.to_device, keep=("text",))
    _, groups = np.unique(fields["text"], axis=0, return_inverse=True)
    groups = groups.reshape(-1)
    clean = {tower: embeddings.pop(tower) for tower in towers}
    scores = {"clean": recall_at_k(clean["image"], clean["text"], groups)}
    for variant, ablated in embeddings.items():  # "<kind>/<field>": the embeddings of the ablated field's tower.
      pair = {**clean, variant.rpartition("/")[2]: ablated}
      scores[variant] = {name: value for name, value in recall_at_k(pair["image"], pair["text"], groups).items()
                         if name != "chance_r1"}
    metrics = reliance.report(scores)
    metrics["num_candidates"] = float(len(groups))
    metrics["num_distinct_captions"] = float(groups.max() + 1)
    return metrics
