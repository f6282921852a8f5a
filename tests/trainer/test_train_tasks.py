"""End to end: captioning fine-tuned from the contrastive smoke run (then re-decoded by sampling), and VQA
from scratch."""
import math

import jax
import numpy as np
import pytest

from mmjax import trainer
from tests.helpers import read_metrics, smoke_config

# One worker trains the shared smoke runs (conftest: contrastive, caption, VQA) for every module that reads them.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("clip_smoke")]


def _losses(workdir):
  return [row["train/loss"] for row in read_metrics(workdir) if "train/loss" in row]


def test_caption_finetunes_from_clip_with_a_frozen_image_tower(clip_smoke_run, caption_smoke_run, shapes_data_dir):
  clip_workdir, _ = clip_smoke_run
  config, workdir, final = caption_smoke_run
  losses = _losses(workdir)
  assert losses[-1] < 0.7 * losses[0], losses
  for split in ("test", "heldout"):
    assert 0 < final[f"eval/{split}/bleu1"] <= 1
    assert math.isfinite(final[f"eval/{split}/cider_d"])
    assert 0 <= final[f"eval/{split}/exact_match"] <= 1
  # Loaded, then frozen: the image tower is bitwise the contrastive run's after 40 steps.
  pretrained = trainer.load_state(smoke_config(shapes_data_dir), clip_workdir).params
  tuned = trainer.load_state(config, workdir).params
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(tuned["image_encoder"]),
               jax.device_get(pretrained["image_encoder"]))
  # Re-decoded by sampling at temperature 1 from the decoder's 64 ids, of which the tokenizer has 45: every
  # sampled id is one the tokenizer can decode.
  config = config.copy_and_resolve_references()  # The shared run's config stays as it was trained.
  config.decode.update(method="sample", temperature=1.0)
  sampled = trainer.evaluate(config, workdir)
  assert sampled["step"] == 40 and 0 <= sampled["eval/test/bleu1"] <= 1


def test_vqa_trains_and_reports_every_question_type_compiling_each_program_once(vqa_smoke_run):
  """Also: 40 steps and two rounds of evals (at 20 and at the end, on two splits, the last batch padded) trace the
  train step and the decoding loop once each (conftest.vqa_smoke_run checks it as it trains)."""
  _, workdir, final = vqa_smoke_run
  losses = _losses(workdir)
  assert losses[-1] < 0.7 * losses[0], losses
  for question_type in ("count", "colour", "shape", "exists", "relation"):
    assert 0 <= final[f"eval/test/accuracy/{question_type}"] <= 1
    assert 0 <= final[f"eval/test/majority_accuracy/{question_type}"] <= 1
