"""Image↔text retrieval recall@K."""
from collections.abc import Sequence

import numpy as np

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
    ranked_hits = np.take_along_axis(hits, order, axis=1)
    first_hit = ranked_hits.argmax(axis=1)
    for k in ks:
      metrics[f"{name}_r{k}"] = float((first_hit < k).mean())
  return metrics


class RetrievalEvaluator(SplitEvaluator):
  """R@1/5/10 both ways on a split; every example is a candidate (≥ 1000 on Shapes' test split)."""

  headline = ("i2t_r1", "t2i_r1", "i2t_r5", "t2i_r5")

  def run(self, params) -> dict[str, float]:
    def embed_pair(batch):
      """[B, 2D]: image and text embeddings side by side, so one pass collects both."""
      return np.concatenate([np.asarray(self.predict_fns["embed_image"](params, batch["image"])),
                             np.asarray(self.predict_fns["embed_text"](params, batch["text"]))], axis=1)

    embeddings, fields = predict_over(self.batches(), embed_pair, self.to_device)
    image_emb, text_emb = np.split(embeddings, 2, axis=1)
    _, groups = np.unique(fields["text"], axis=0, return_inverse=True)
    metrics = recall_at_k(image_emb, text_emb, groups.reshape(-1))
    metrics["num_candidates"] = float(len(groups))
    metrics["num_distinct_captions"] = float(groups.max() + 1)
    return metrics
