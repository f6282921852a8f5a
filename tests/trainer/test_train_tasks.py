"""End to end: captioning fine-tuned from the contrastive smoke run (then re-decoded by sampling), and VQA
from scratch."""
import math

import chex
import jax
import numpy as np
import pytest

from configs import shapes_caption, shapes_clip, shapes_vqa
from mmjax import tasks, trainer
from mmjax.trainer import run as run_lib
from tests.helpers import read_metrics

# One worker trains the shared contrastive smoke run (conftest.clip_smoke_run) for both modules.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("clip_smoke")]


def _config(module, arg, data_dir, **overrides):
  config = module.get_config(arg)
  config.data.data_dir = data_dir
  config.update_from_flattened_dict(overrides)
  return config


def _losses(workdir):
  return [row["train/loss"] for row in read_metrics(workdir) if "train/loss" in row]


def test_caption_finetunes_from_clip_with_a_frozen_image_tower(clip_smoke_run, shapes_data_dir, tmp_path):
  clip_workdir, _ = clip_smoke_run
  config = _config(shapes_caption, "smoke", shapes_data_dir, init_from=clip_workdir, freeze="image",
                   total_steps=40, **{"evals.test.every_steps": 0, "evals.heldout.every_steps": 0,
                                      "evals.test.split": "test[:128]", "evals.heldout.split": "heldout[:128]"})
  final = trainer.train(config, str(tmp_path))
  losses = _losses(str(tmp_path))
  assert losses[-1] < 0.7 * losses[0], losses
  for split in ("test", "heldout"):
    assert 0 < final[f"eval/{split}/bleu1"] <= 1
    assert math.isfinite(final[f"eval/{split}/cider_d"])
    assert 0 <= final[f"eval/{split}/exact_match"] <= 1
  # Loaded, then frozen: the image tower is bitwise the contrastive run's after 40 steps.
  pretrained = trainer.load_state(_config(shapes_clip, "smoke", shapes_data_dir),
                                  clip_workdir).params
  tuned = trainer.load_state(config, str(tmp_path)).params
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(tuned["image_encoder"]),
               jax.device_get(pretrained["image_encoder"]))
  # Re-decoded by sampling at temperature 1 from the decoder's 64 ids, of which the tokenizer has 45: every
  # sampled id is one the tokenizer can decode.
  config.decode.update(method="sample", temperature=1.0)
  sampled = trainer.evaluate(config, str(tmp_path))
  assert sampled["step"] == 40 and 0 <= sampled["eval/test/bleu1"] <= 1


def test_vqa_trains_and_reports_every_question_type_compiling_each_program_once(shapes_data_dir, tmp_path,
                                                                                monkeypatch):
  """Also: 40 steps and two rounds of evals (at 20 and at the end, on two splits, the last batch padded) trace the
  train step and the decoding loop once each."""
  make_train_step = run_lib.make_train_step
  monkeypatch.setattr(run_lib, "make_train_step",
                      lambda *args, **kwargs: chex.assert_max_traces(make_train_step(*args, **kwargs), n=1))
  predict_fns = tasks.GenerationTask.predict_fns
  monkeypatch.setattr(tasks.GenerationTask, "predict_fns",
                      lambda self: {k: chex.assert_max_traces(fn, n=1) for k, fn in predict_fns(self).items()})
  config = _config(shapes_vqa, "smoke", shapes_data_dir, total_steps=40,
                   **{"evals.test.every_steps": 20, "evals.heldout.every_steps": 20,
                      "evals.test.split": "test[:128]", "evals.heldout.split": "heldout[:128]"})
  final = trainer.train(config, str(tmp_path))
  losses = _losses(str(tmp_path))
  assert losses[-1] < 0.7 * losses[0], losses
  for question_type in ("count", "colour", "shape", "exists", "relation"):
    assert 0 <= final[f"eval/test/accuracy/{question_type}"] <= 1
    assert 0 <= final[f"eval/test/majority_accuracy/{question_type}"] <= 1
