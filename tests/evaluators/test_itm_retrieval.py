"""Re-ranking the contrastive top-k by ITM score: the pure function on a hand-built matrix, and the evaluator's
plumbing (token packing, pair batches with padding, the t2i direction) with numpy stand-ins for the model."""
import ml_collections
import numpy as np
import pytest

from mmjax import errors
from mmjax.evaluators import ItmRetrievalEvaluator, rerank

SIMILARITY = np.array([[0.9, 0.8, 0.1, 0.5],    # contrastive order 0 1 3 2
                       [0.2, 0.3, 0.4, 0.1],    # 2 1 0 3
                       [0.5, 0.5, 0.0, 0.6]])   # 3 0 1 2 (the tie keeps index order)
ITM_SCORES = np.array([[0.0, 5.0, 9.0, 1.0],
                       [1.0, 1.0, 7.0, 0.0],
                       [3.0, 3.0, 0.0, 2.0]])


def _scorer(calls):
  def score(queries, candidates):
    calls.append((queries.tolist(), candidates.tolist()))
    return ITM_SCORES[queries, candidates]
  return score


def test_rerank_reorders_only_the_top_k_and_scores_them_in_one_call():
  calls = []
  order = rerank(SIMILARITY, _scorer(calls), k=2)
  # q0: top-2 {0, 1} → 1 (5) before 0 (0); candidate 2 has the best ITM score but is not in the top-2.
  # q1: {2, 1} already in ITM order. q2: {3, 0} → 0 (3) before 3 (2).
  np.testing.assert_array_equal(order, [[1, 0, 3, 2], [2, 1, 0, 3], [0, 3, 1, 2]])
  assert calls == [([0, 0, 1, 1, 2, 2], [0, 1, 2, 1, 3, 0])]


def test_rerank_with_k_past_the_candidates_orders_all_by_itm_and_k_1_changes_nothing():
  # q1's candidates 0 and 1 tie on ITM score (1): they keep their contrastive order, 1 before 0.
  np.testing.assert_array_equal(rerank(SIMILARITY, _scorer([]), k=10), [[2, 1, 3, 0], [2, 1, 0, 3], [0, 1, 3, 2]])
  np.testing.assert_array_equal(rerank(SIMILARITY, _scorer([]), k=1), np.argsort(-SIMILARITY, 1, kind="stable"))


# Six items; the caption token of item i is CAPTION[i] (items 0 and 2 share one). Text embeddings are one-hot in
# their token; image i's points mostly at the next item's caption (1.0) and less at its own (0.9), so contrastive
# R@1 is 0 both ways, while the ITM head knows the true pairs: logit +5, else -5 — except that it is unsure about
# image 3, 0 for its caption (token 3) against -0.2 for the next one (token 4). The contrastive log-probability is
# 10·cos, so in the joint score (log σ(ITM) + 10·cos) the contrastive model's +1 outweighs that ITM margin.
CAPTION = np.array([1, 2, 1, 3, 4, 5])
IMAGE_EMB = np.eye(6)[np.roll(CAPTION, -1)] * 1.0 + np.eye(6)[CAPTION] * 0.9
MATCH = np.where(np.arange(6)[None, :] == CAPTION[:, None], 5.0, -5.0)  # [image, token]
MATCH[3, 3], MATCH[3, 4] = 0.0, -0.2


def _image_tokens(params, image):
  index = image[:, 0].astype(int)
  return IMAGE_EMB[index], np.broadcast_to(image[:, :, None], (len(image), 2, 3)), np.ones((len(image), 2), bool)


def _text_tokens(params, text):
  return np.eye(6)[text[:, 0]], text[:, :1, None].astype(np.float32), text[:, :1] > 0


PREDICT_FNS = {"embed_image": lambda p, image: _image_tokens(p, image)[0],
               "embed_text": lambda p, text: _text_tokens(p, text)[0],
               "image_tokens": _image_tokens, "text_tokens": _text_tokens,
               "match": lambda p, pairs: MATCH[pairs["image_tokens"][:, 0, 0].astype(int),
                                               pairs["text_tokens"][:, 0, 0].astype(int)],
               "contrastive_log_prob": lambda p, cosines: 10 * cosines}


def _evaluator(rerank_k, predict_fns=PREDICT_FNS):
  config = ml_collections.ConfigDict(dict(name="itm_retrieval", split="test", every_steps=0, rerank_k=rerank_k))
  evaluator = ItmRetrievalEvaluator("test", config, data_config=ml_collections.ConfigDict(),
                                    predict_fns=predict_fns, batch_size=4, to_device=dict)
  rows = {"image": np.arange(6, dtype=np.float32)[:, None], "text": np.stack([CAPTION, 0 * CAPTION], 1)}
  # Two batches of four, the last padded with invalid rows, as mmjax.data.eval_batches gives them.
  padded = {k: np.concatenate([v, v[:2]]) for k, v in rows.items()}
  padded["valid"] = np.arange(8) < 6
  evaluator.batches = lambda: iter([{k: v[:4] for k, v in padded.items()}, {k: v[4:] for k, v in padded.items()}])
  return evaluator


@pytest.mark.parametrize("rerank_k, i2t, t2i, joint_i2t, joint_t2i", [
    # k=2: image 1's and image 5's next caption is the shared one (two texts at 1.0), which fills their top-2;
    # so does the shared caption's pair of previous images (1 and 5) for texts 0 and 2. The ITM fixes the others;
    # jointly, image 3 keeps text 4 (the next caption) and text 4 takes image 3 (the previous image).
    (2, 4 / 6, 4 / 6, 3 / 6, 3 / 6),
    (3, 1.0, 1.0, 5 / 6, 5 / 6),
])
def test_the_evaluator_reports_contrastive_and_reranked_recall(rerank_k, i2t, t2i, joint_i2t, joint_t2i):
  metrics = _evaluator(rerank_k).run(params=None)
  assert metrics["i2t_r1"] == 0.0 and metrics["t2i_r1"] == 0.0 and metrics["num_distinct_captions"] == 5
  assert (metrics["rerank/i2t_r1"], metrics["rerank/t2i_r1"], metrics["rerank_k"]) == (i2t, t2i, rerank_k)
  assert (metrics["rerank_joint/i2t_r1"], metrics["rerank_joint/t2i_r1"]) == (joint_i2t, joint_t2i)
  assert metrics["rerank/i2t_r10"] == 1.0 and metrics["i2t_r5"] == 1.0


def test_config_errors_name_the_key():
  with pytest.raises(errors.ConfigError, match=r"config.evals.test.rerank_k=None"):
    _evaluator(None)
  with pytest.raises(errors.ConfigError, match="contrastive_itm"):
    _evaluator(4, {k: v for k, v in PREDICT_FNS.items() if k != "match"})
