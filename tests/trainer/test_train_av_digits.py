"""AV-Digits end to end: a smoke run of configs/av_digits.py reports accuracy, macro-F1 and reliance."""
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import av_digits
from mmjax import errors, trainer
from tests.helpers import smoke_config


# Per-modality heads and their losses; every fusion on its own is covered by tests/models/test_fusion.py.
@pytest.mark.parametrize("fusion", ["late_vote"])
def test_smoke_run_reports_accuracy_f1_and_modality_reliance(av_digits_data_dir, tmp_path, fusion):
  # 20 steps: what is checked is that the run trains its three encoders and per-modality heads and reports.
  config = smoke_config(av_digits_data_dir, av_digits, **{"model.fusion": fusion, "total_steps": 20})
  final = trainer.train(config, str(tmp_path))
  clean = final["eval/test/accuracy"]
  assert 0.0 <= clean <= 1.0 and 0.0 <= final["eval/test/macro_f1"] <= 1.0
  assert final["eval/test/num_examples"] == 128
  for modality in ("image", "audio", "text"):
    for kind in ("zeroed", "shuffled"):
      ablated = final[f"eval/test/{kind}/{modality}/accuracy"]
      assert math.isclose(final[f"eval/test/{kind}/{modality}/accuracy_drop"], clean - ablated, abs_tol=1e-9)


def test_unimodal_baseline_and_bad_args():
  config = av_digits.get_config("fusion=audio_only,smoke")
  assert config.total_steps == 60 and config.evals.test.every_steps == 0  # At the end only.
  assert dict(config.task.inputs) == {"audio": "audio"} and tuple(config.evals.test.reliance) == ("audio",)
  assert config.model.encoders.to_dict().keys() == {"audio"} and "sample_rate" not in config.model.encoders.audio
  with pytest.raises(errors.ConfigError, match=r"Unknown fusion 'concat_everything' \(config arg\); known: "
                                               r"\[.*'early'.*'image_only'"):
    av_digits.get_config("fusion=concat_everything")
  with pytest.raises(errors.ConfigError, match="modalities='image\\+smell'"):
    av_digits.get_config("modalities=image+smell")


def test_stage_two_reads_the_stage_one_runs_the_ablation_runner_writes_for_its_seed():
  from mmjax import ablation
  from mmjax.trainer import finetune

  pretrain = ablation.Sweep(**av_digits.SWEEPS["pretrain"])
  assert [point["pretrain"] for point in pretrain.points] == ["image", "audio", "text"]
  for fusion, modalities in (("cross_attention", ["image", "audio", "text"]), ("audio_only", ["audio"])):
    config = av_digits.get_config(f"variant=synergy,fusion={fusion},encoders_from=/sweeps/pretrain/")
    assert config.task.label == config.evals.test.label == "label" and config.freeze == ""
    frozen = av_digits.get_config(f"variant=synergy,fusion={fusion},encoders_from=/sweeps/pretrain/,frozen=true")
    assert frozen.freeze == ",".join(modalities)
    for seed in (0, 2):
      assert finetune.init_from_runs(config.init_from, seed) == [
          f"/sweeps/pretrain/runs/{ablation.run_id({'variant': 'synergy', 'pretrain': m}, seed)}" for m in modalities]
  stage_one = av_digits.get_config("variant=synergy,pretrain=audio")
  assert stage_one.task.label == stage_one.evals.test.label == "audio_digit" and not stage_one.init_from
  assert dict(stage_one.task.inputs) == {"audio": "audio"} and stage_one.data.audio_stretch > 0
  with pytest.raises(errors.ConfigError, match="pretrain= .* and encoders_from= .* exclude each other"):
    av_digits.get_config("pretrain=image,encoders_from=/sweeps/pretrain")
  with pytest.raises(errors.ConfigError, match="frozen=true freezes the encoders loaded by encoders_from="):
    av_digits.get_config("frozen=true")


def test_stage_two_trains_from_each_seeds_own_stage_one_runs_frozen(av_digits_data_dir, tmp_path):
  """Stage 2 end to end from two stage-1 checkpoints where the ablation runner puts them for seed 1 (each tower
  written directly, standing for a stage-1 run: training those too would triple the cost for nothing the config
  test does not check), their towers frozen through the fusion's training."""
  from mmjax.models.encoders import build_encoder
  from mmjax.trainer import checkpoint, finetune

  config = smoke_config(av_digits_data_dir, av_digits, f"modalities=image+text,fusion=concat,smoke,frozen=true,"
                        f"encoders_from={tmp_path / 'pretrain'}", total_steps=2, seed=1,
                        **{"optim.warmup_steps": 0, "evals": {}})
  inputs = {"image": jnp.zeros((1, 28, 28, 1)), "text": jnp.ones((1, config.data.text_len), jnp.int32)}
  pretrained = {}
  for index, (modality, run) in enumerate(zip(inputs, finetune.init_from_runs(config.init_from, seed=1))):
    assert run == av_digits.pretrain_run(str(tmp_path / "pretrain"), "redundant", modality).format(seed=1)
    encoder = build_encoder(modality, config.model.encoders[modality])
    pretrained[modality] = nn.unbox(jax.jit(encoder.init)(jax.random.key(index, impl="rbg"), inputs[modality]))
    saver = checkpoint.Checkpointer(f"{run}/checkpoints", max_to_keep=1)
    saver.save(7, {"params": {f"{modality}_encoder": pretrained[modality]["params"]}}, {})
    saver.close()
  trainer.train(config, str(tmp_path / "fusion"))
  fused = finetune.load_pretrained_params(str(tmp_path / "fusion"))[0]
  for modality, tower in pretrained.items():
    jax.tree.map(np.testing.assert_array_equal, fused[f"{modality}_encoder"], tower["params"])
