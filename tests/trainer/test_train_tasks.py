"""End to end: captioning fine-tuned from the contrastive smoke run (then re-decoded by sampling), and VQA
from scratch."""
import json
import math

import jax
import numpy as np
import pytest

from mmjax import errors, trainer
from tests import helpers
from tests.helpers import read_metrics, smoke_config

# One worker trains the shared smoke runs (conftest: contrastive, caption, VQA) for every module that reads them.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("clip_smoke")]


def _losses(workdir):
  return [row["train/loss"] for row in read_metrics(workdir) if "train/loss" in row]


def _examples(path) -> list[dict]:
  with open(path) as f:
    return [json.loads(line) for line in f]


def test_caption_finetunes_from_clip_with_a_frozen_image_tower(clip_smoke_run, caption_smoke_run, shapes_data_dir,
                                                               tmp_path):
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
  # With the sampled captions written per image (--predictions_dir), whose exact matches are the metric's.
  sampled = trainer.evaluate(config, workdir, predictions_dir=str(tmp_path))
  assert sampled["step"] == 40 and 0 <= sampled["eval/test/bleu1"] <= 1
  for split in ("test", "heldout"):
    examples = _examples(tmp_path / f"{split}.jsonl")
    assert len(examples) == sampled[f"eval/{split}/num_examples"] == 128
    assert all(example["references"] and isinstance(example["generated"], str) for example in examples)
    assert np.mean([example["exact_match"] for example in examples]) == sampled[f"eval/{split}/exact_match"]


def test_vqa_trains_and_reports_every_question_type_compiling_each_program_once(vqa_smoke_run):
  """Also: 40 steps and two rounds of evals (at 20 and at the end, on two splits, the last batch padded) trace the
  train step and the decoding loop once each (conftest.vqa_smoke_run checks it as it trains)."""
  _, workdir, final = vqa_smoke_run
  losses = _losses(workdir)
  assert losses[-1] < 0.7 * losses[0], losses
  for question_type in ("count", "colour", "shape", "exists", "relation"):
    assert 0 <= final[f"eval/test/accuracy/{question_type}"] <= 1
    assert 0 <= final[f"eval/test/majority_accuracy/{question_type}"] <= 1


def test_vqa_predictions_are_what_the_accuracy_counts(vqa_smoke_run, clip_smoke_run, shapes_data_dir, tmp_path):
  """--predictions_dir: every test question once, decoded, with its type, answer and the model's; on the
  training devices they give the final accuracy overall and per type. An eval that writes none is refused."""
  config, workdir, final = vqa_smoke_run
  devices = jax.devices()[:helpers.SCRIPT_DEVICES]
  trainer.evaluate(config, workdir, devices, predictions_dir=str(tmp_path))
  examples = _examples(tmp_path / "test.jsonl")
  assert len(examples) == final["eval/test/num_examples"] == 128
  assert all(example["question"].endswith("?") for example in examples)
  for kind in ("count", "colour", "shape", "exists", "relation", None):
    chosen = [example for example in examples if kind in (None, example["question_type"])]
    assert all(example["correct"] == (example["predicted"] == example["answer"]) for example in chosen)
    accuracy = np.mean([example["correct"] for example in chosen])
    assert accuracy == final["eval/test/accuracy" + (f"/{kind}" if kind else "")], kind
  with pytest.raises(errors.ConfigError, match="No eval of config.evals .* writes per-example predictions"):
    trainer.evaluate(smoke_config(shapes_data_dir), clip_smoke_run[0], devices, predictions_dir=str(tmp_path))
