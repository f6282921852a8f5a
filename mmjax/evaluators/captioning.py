"""Caption metrics of decoded text: BLEU-1..4 and CIDEr-D (pycocoevalcap), exact match, token accuracy."""
from collections.abc import Sequence
from typing import Any

import ml_collections
import numpy as np
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider

from mmjax import data as mmdata
from mmjax.evaluators import reliance
from mmjax.evaluators.common import SplitEvaluator, predict_over


def caption_metrics(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
  """Corpus BLEU-1..4 and CIDEr-D of hypothesis i against its references[i] (lower-case text
  with space-separated tokens, as the tokenizer's `decode` gives), and exact match with the
  first reference.

  These are the COCO caption evaluation's own implementations (coco-caption's `Cider` is
  CIDEr-D: clipped n-gram counts, a Gaussian length penalty, ×10), with their IDF computed
  over this set of references, so scores compare across runs on the same split only.
  """
  gts = {i: list(refs) for i, refs in enumerate(references)}
  res = {i: [hypothesis] for i, hypothesis in enumerate(hypotheses)}
  bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
  cider, _ = Cider().compute_score(gts, res)
  metrics = {f"bleu{n}": float(score) for n, score in enumerate(bleu, start=1)}
  metrics["cider_d"] = float(cider)
  metrics["exact_match"] = float(np.mean([h == refs[0] for h, refs in zip(hypotheses, references)]))
  return metrics


def token_accuracy(generated: np.ndarray, targets: np.ndarray) -> float:
  """Fraction of reference tokens (eos included, padding not) that the generated sequence
  has at the same position. generated, targets: int[N, L] (generated may be longer)."""
  valid = targets != 0
  return float((generated[:, :targets.shape[1]] == targets)[valid].mean())


class CaptioningEvaluator(SplitEvaluator):
  """Decodes a caption for every image of `split` (with `config.decode`) and scores it against the image's
  captions: all of them where the batches carry `caption_refs`, else its one `text`. `token_accuracy` and
  `exact_match` compare with the first.

  Modality reliance (`reliance`, e.g. ("image",)): BLEU-1..4, CIDEr-D and exact match again of captions decoded
  from the zeroed / shuffled image (`zeroed/image/cider_d`, `..._drop`; see mmjax.evaluators.reliance). A model
  that writes the split's likeliest caption whatever the image loses little: its drop is the image's share of
  the score. Each ablation decodes the split once more.
  """

  headline = ("bleu4", "cider_d", "exact_match")
  reports_reliance = True
  writes_examples = True  # {"references", "generated", "exact_match"} per image.

  def __init__(self, key: str, eval_config: ml_collections.ConfigDict, **kwargs):
    super().__init__(key, eval_config, **kwargs)
    self.tokenizer = mmdata.get_tokenizer(self.data_config)

  def run(self, params, examples: list[dict[str, Any]] | None = None) -> dict[str, float]:
    predicts = reliance.ablated(lambda batch: self.predict_fns["generate"](params, batch), self.reliance, self.key)
    generated, fields = predict_over(self.batches(), predicts, self.to_device, keep=("text", "caption_refs"))
    if "caption_refs" in fields:  # Every caption of the image (a folder dataset's), the first one first.
      references = [[self.tokenizer.decode(ids) for ids in refs if ids.any()] for refs in fields["caption_refs"]]
    else:
      references = [[self.tokenizer.decode(ids)] for ids in fields["text"]]
    captions = {variant: [self.tokenizer.decode(ids) for ids in outputs] for variant, outputs in generated.items()}
    metrics = reliance.report({variant: caption_metrics(texts, references) for variant, texts in captions.items()})
    if examples is not None:
      examples.extend({"references": refs, "generated": caption, "exact_match": caption == refs[0]}
                      for refs, caption in zip(references, captions["clean"]))
    metrics["token_accuracy"] = token_accuracy(generated["clean"], fields["text"])
    metrics["num_examples"] = float(len(references))
    return metrics
