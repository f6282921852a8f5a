"""Retrieval re-ranked by image–text matching: the contrastive top-k of each query, reordered by ITM score.

The contrastive embedding ranks all N candidates cheaply but compares an image and a text only through two
vectors; the ITM head (mmjax.tasks.itm) reads both token sequences together and can tell "red circle above blue
square" from its swap, at the cost of one fused forward pass per pair. So it scores only each query's k best
contrastive candidates (ALBEF/BLIP retrieval), N·k pairs per direction.
"""
from collections.abc import Callable, Mapping

import ml_collections
import numpy as np

from mmjax import errors
from mmjax.evaluators.common import process_batches, predict_over
from mmjax.evaluators.retrieval import RetrievalEvaluator, recall_of_ranking

# (query indices int[P], candidate indices int[P]) → scores f32[P], higher = better match.
PairScorer = Callable[[np.ndarray, np.ndarray], np.ndarray]
TOKEN_PARTS = ("image_emb", "image_tokens", "image_mask", "text_emb", "text_tokens", "text_mask")


def rerank(similarity: np.ndarray, score_pairs: PairScorer, k: int) -> np.ndarray:
  """Rankings int[Q, C] (each row query q's candidates, best first): the candidates by `similarity` (f32[Q, C],
  ties in index order), with the first k of every row reordered by `score_pairs` of (q, candidate), which is
  called once, on all Q·k pairs (ties keep the contrastive order). Candidates past k keep their place."""
  order = np.argsort(-similarity, axis=1, kind="stable")
  k = min(k, similarity.shape[1])
  top = order[:, :k]
  scores = np.asarray(score_pairs(np.repeat(np.arange(len(order)), k), top.reshape(-1))).reshape(top.shape)
  order[:, :k] = np.take_along_axis(top, np.argsort(-scores, axis=1, kind="stable"), axis=1)
  return order


def _scored_once(score_pairs: PairScorer) -> PairScorer:
  """`score_pairs` that remembers its answers, so re-ranking the same pairs another way costs no second pass."""
  answers = {}

  def score(queries: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    key = (queries.tobytes(), candidates.tobytes())
    if key not in answers:
      answers[key] = np.asarray(score_pairs(queries, candidates))
    return answers[key]
  return score


def _unpack(packed: np.ndarray, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
  """[N, Σ sizes] float32 columns → {name: [N, *shape]} in `shapes`' order (masks back to bool)."""
  sizes = [int(np.prod(shape)) for shape in shapes.values()]
  columns = np.split(packed, np.cumsum(sizes)[:-1], axis=1)
  return {name: (x.astype(bool) if name.endswith("mask") else x).reshape(len(packed), *shape)
          for (name, shape), x in zip(shapes.items(), columns)}


class ItmRetrievalEvaluator(RetrievalEvaluator):
  """RetrievalEvaluator's metrics, plus the same retrieval with each query's top `rerank_k`
  (config.evals.<key>.rerank_k) candidates reordered: `rerank/{i2t,t2i}_r{1,5,10}` by the ITM logit alone, and
  `rerank_joint/...` by log σ(ITM logit) + the contrastive log-probability of the pair (the task's
  `contrastive_log_prob`): the two models' evidence added, untuned, as BLIP adds the similarity to the ITM score.
  On Shapes (configs/shapes_clip.py:itm=true, seeds 0–2) the joint score raised the run's own contrastive R@1
  in 11 of the 12 split × direction figures (by up to 0.0195), while the ITM logit alone lowered it in all 12 (by
  0.035–0.078): the ITM head errs on other pairs than the embedding does, and not fewer.

  The towers' tokens of the whole split are held on the host (every process holds all of them, as the
  predict functions' outputs are replicated), and pairs are scored in fixed-shape batches of query/candidate
  indices over the devices, each process feeding its share (process_batches).
  """

  headline = ("i2t_r1", "t2i_r1", "rerank/i2t_r1", "rerank/t2i_r1", "rerank_joint/i2t_r1", "rerank_joint/t2i_r1")

  def __init__(self, key: str, eval_config: ml_collections.ConfigDict, **kwargs):
    super().__init__(key, eval_config, **kwargs)
    rerank_k = eval_config.get("rerank_k")
    if isinstance(rerank_k, bool) or not isinstance(rerank_k, int) or rerank_k < 1:
      raise errors.ConfigError(f"config.evals.{key}.rerank_k={rerank_k!r}: set it to how many contrastive "
                               "candidates per query the ITM head re-ranks (a positive integer, e.g. 16).")
    missing = sorted({"image_tokens", "text_tokens", "match", "contrastive_log_prob"} - set(self.predict_fns))
    if missing:
      raise errors.ConfigError(f"config.evals.{key}.name='itm_retrieval' needs predict functions {missing}, which "
                               "this task lacks: use config.task.name='contrastive_itm'.")
    self.rerank_k = rerank_k

  def run(self, params) -> dict[str, float]:
    metrics = super().run(params)
    split, groups = self._encode_tokens(params)
    hits = groups[:, None] == groups[None, :]
    similarity = split["image_emb"] @ split["text_emb"].T
    score = self._pair_scorer(params, split)
    for name, scores, score_pairs in (("i2t", similarity, score),
                                      ("t2i", similarity.T, lambda text, image: score(image, text))):
      itm = _scored_once(score_pairs)

      def joint(queries, candidates, scores=scores, itm=itm):
        prior = self.predict_fns["contrastive_log_prob"](params, scores[queries, candidates])
        return -np.logaddexp(0, -itm(queries, candidates)) + np.asarray(prior)  # log σ(ITM) + log p_contrastive.

      for variant, variant_score in (("rerank", itm), ("rerank_joint", joint)):
        recalls = recall_of_ranking(rerank(scores, variant_score, self.rerank_k), hits)
        metrics.update({f"{variant}/{name}_r{k}": recall for k, recall in recalls.items()})
    metrics["rerank_k"] = float(min(self.rerank_k, len(groups)))
    return metrics

  def _encode_tokens(self, params) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """({TOKEN_PARTS name: [N, ...]}, caption groups int[N]) of the split, in one pass over it."""
    shapes = {}

    def encode(batch):
      outputs = (*self.predict_fns["image_tokens"](params, batch["image"]),
                 *self.predict_fns["text_tokens"](params, batch["text"]))
      parts = [np.asarray(x, np.float32) for x in outputs]
      shapes.update({name: x.shape[1:] for name, x in zip(TOKEN_PARTS, parts)})
      return np.concatenate([x.reshape(len(x), -1) for x in parts], axis=1)

    packed, fields = predict_over(self.batches(), encode, self.to_device, keep=("text",))
    _, groups = np.unique(fields["text"], axis=0, return_inverse=True)
    return _unpack(packed, shapes), groups.reshape(-1)

  def _pair_scorer(self, params, split: Mapping[str, np.ndarray]) -> PairScorer:
    """(image indices, text indices) → the ITM logits of those pairs of the split."""
    def score(image_index: np.ndarray, text_index: np.ndarray) -> np.ndarray:
      def pair_tokens(rows):
        image, text = rows["image_index"], rows["text_index"]
        return self.to_device({"image_tokens": split["image_tokens"][image], "image_mask": split["image_mask"][image],
                               "text_tokens": split["text_tokens"][text], "text_mask": split["text_mask"][text]})

      batches = process_batches({"image_index": image_index, "text_index": text_index}, self.batch_size)
      return predict_over(batches, lambda pairs: self.predict_fns["match"](params, pairs), pair_tokens, keep=())[0]
    return score
