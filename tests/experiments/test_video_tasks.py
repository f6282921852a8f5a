"""Video captioning and video QA end to end: configs/moving_shapes.py's smoke runs, trained in-process through the
same trainer, tasks and evaluators as the image tasks; and the single-frame baseline's config."""
import jax
import numpy as np
import pytest

from configs import moving_shapes
from mmjax import ablation, errors, trainer
from tests import helpers


@pytest.mark.parametrize("arg,headline", [("task=caption,video=factorised", "eval/test/cider_d"),
                                          ("task=vqa,video=tubelet", "eval/test/accuracy/direction")])
def test_a_smoke_run_trains_and_evaluates(moving_shapes_data_dir, tmp_path, arg, headline):
  config = helpers.smoke_config(moving_shapes_data_dir, moving_shapes, f"smoke,{arg}", **{
      "total_steps": 16, "log_every_steps": 8, "optim.warmup_steps": 2, "evals.test.split": "test[:32]",
      "evals.heldout.split": "heldout[:32]"})
  final = trainer.train(config, str(tmp_path), devices=jax.devices()[:helpers.SCRIPT_DEVICES])
  losses = [row["train/loss"] for row in helpers.read_metrics(str(tmp_path)) if "train/loss" in row]
  assert len(losses) == 2 and np.isfinite(losses).all() and losses[-1] < losses[0]
  assert headline in final and final["eval/heldout/num_examples"] == 32


def test_the_single_frame_baseline_reads_the_middle_frame_through_the_image_tower():
  config = moving_shapes.get_config("task=vqa,frames=middle")
  assert dict(config.task.inputs) == {"image": "image", "text": "question"}
  assert config.model.encoders.image.name == "vit" and "video" not in config.model.encoders
  video = moving_shapes.get_config("task=vqa")
  assert video.model.encoders.video.variant == config.model.encoders.image.variant  # The same frame tower.


@pytest.mark.parametrize("arg,point,tower", [("video=tubelet", {"video": "tubelet"}, "video"),
                                             ("frames=middle", {"frames": "middle"}, "image")])
def test_vqa_starts_from_the_caption_sweeps_run_of_the_same_tower_and_freezes_it(arg, point, tower):
  config = moving_shapes.get_config(f"task=vqa,{arg},captions_from=/sweeps/caption/")
  expected = ablation.run_id({"task": "caption", **point}, 3)  # The caption sweep's directory of that run.
  assert config.init_from.replace("{seed}", "3") == f"/sweeps/caption/runs/{expected}"
  assert config.freeze == tower
  with pytest.raises(errors.ConfigError, match="captions_from= starts a VQA run"):
    moving_shapes.get_config("task=caption,captions_from=/sweeps/caption")
