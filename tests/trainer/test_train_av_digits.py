"""AV-Digits end to end: a smoke run of configs/av_digits.py reports accuracy, macro-F1 and reliance."""
import math

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
