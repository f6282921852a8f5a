"""Sentiment end to end: a smoke run of configs/sentiment.py reports class and score metrics per subset."""
import math

import pytest

from configs import sentiment
from mmjax import ablation, errors, trainer
from tests.helpers import smoke_config

# One worker with tests/data/test_sentiment.py: the small dataset is generated once.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("sentiment")]


def test_smoke_run_reports_cmu_mosi_metrics_per_subset_and_reliance(sentiment_data_dir, tmp_path):
  # 8 steps: what is checked is that the run trains both heads and reports, not what it learns.
  config = smoke_config(sentiment_data_dir, sentiment, "smoke,fusion=late_mean", total_steps=8, eval_batch_size=96,
                        **{"optim.warmup_steps": 2})
  final = {key.removeprefix("eval/test/"): value for key, value in trainer.train(config, str(tmp_path)).items()}
  counts = {subset: final[f"{subset}/num_examples"] for subset in ("sincere", "sarcastic")}
  assert final["num_examples"] == 96 == sum(counts.values()) and counts["sarcastic"] > 0
  for metric in ("accuracy", "acc2"):  # Means over examples: the subsets' weighted by their sizes.
    by_subset = sum(counts[s] * final[f"{s}/{metric}"] for s in counts) / final["num_examples"]
    if metric == "acc2":  # Over non-neutral examples only, so only bounded by the subsets' values.
      assert min(final[f"{s}/acc2"] for s in counts) <= final["acc2"] <= max(final[f"{s}/acc2"] for s in counts)
    else:
      assert final[metric] == pytest.approx(by_subset)
  assert final["score_mae"] >= 0 and -1 <= final["score_corr"] <= 1 and 0 <= final["macro_f1"] <= 1
  for modality in ("image", "audio", "text"):
    for subset in ("sincere/", "sarcastic/", ""):
      key = f"shuffled/{modality}/{subset}accuracy"
      assert math.isclose(final[key + "_drop"], final[f"{subset}accuracy"] - final[key], abs_tol=1e-9)


def test_sweeps_cover_every_fusion_and_baseline_and_the_task_needs_a_score_head():
  fusion = ablation.Sweep(**sentiment.SWEEPS["fusion"])
  assert [p["fusion"] for p in fusion.points] == ["image_only", "audio_only", "text_only", *sentiment.FUSIONS]
  assert ablation.Sweep(**sentiment.SWEEPS["reliance"]).points == fusion.points[3:]  # The fusions' runs.
  config = sentiment.get_config("fusion=text_only")
  assert dict(config.task.inputs) == {"text": "text"} and tuple(config.evals.test.reliance) == ("text",)
  from mmjax import models, tasks
  config.model.unlock().score_head = False
  model = models.build(config.model, num_classes=3, vocab_size=90)
  with pytest.raises(errors.ConfigError, match="config.task.score='score' needs a model with a score head"):
    tasks.build(config, model, tokenizer=None)
