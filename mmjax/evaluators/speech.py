"""Word and character error rates of transcripts (jiwer), overall and per kind of utterance."""
from collections.abc import Sequence

import jiwer
import ml_collections
import numpy as np

from mmjax import data as mmdata
from mmjax.evaluators.common import SplitEvaluator, predict_over


def error_rates(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, float]:
  """Corpus word and character error rates, (substitutions + deletions + insertions) / reference length, summed
  over the utterances before dividing (jiwer's: a long utterance weighs more), and the fraction of utterances
  transcribed exactly. Words are split on white space after trimming it and merging runs of it; characters
  include the spaces between words. WER can exceed 1 (insertions)."""
  words = jiwer.process_words(list(references), list(hypotheses))
  chars = jiwer.process_characters(list(references), list(hypotheses))
  exact = [" ".join(h.split()) == " ".join(r.split()) for h, r in zip(hypotheses, references)]
  return {"wer": float(words.wer), "cer": float(chars.cer), "sentence_accuracy": float(np.mean(exact))}


class SpeechRecognitionEvaluator(SplitEvaluator):
  """Transcribes every utterance of `split` with the task's `generate` (a decoder's autoregressive decoding, or a
  CTC model's greedy or prefix-beam decoding, by `config.decode`) and scores it against the batch field `text`:
  `wer`, `cer` and `sentence_accuracy`, and each again per kind of utterance (`wer/<kind>`, ...) where the batches
  carry a `source` label (Spoken Shapes: caption, digits). Lower is better for the error rates.
  """

  headline = ("wer", "cer")

  def __init__(self, key: str, eval_config: ml_collections.ConfigDict, **kwargs):
    super().__init__(key, eval_config, **kwargs)
    self.tokenizer = mmdata.get_tokenizer(self.data_config)
    self.sources = mmdata.label_names(self.data_config).get("source", [])

  def run(self, params) -> dict[str, float]:
    generated, fields = predict_over(self.batches(), lambda batch: self.predict_fns["generate"](params, batch),
                                     self.to_device, keep=("text", "source"))
    hypotheses = [self.tokenizer.decode(ids) for ids in generated]
    references = [self.tokenizer.decode(ids) for ids in fields["text"]]
    metrics = error_rates(hypotheses, references)
    for index, name in enumerate(self.sources):
      rows = np.flatnonzero(fields["source"] == index) if "source" in fields else []
      if len(rows):
        kind = error_rates([hypotheses[i] for i in rows], [references[i] for i in rows])
        metrics.update({f"{metric}/{name}": value for metric, value in kind.items()})
    metrics["num_examples"] = float(len(references))
    return metrics
