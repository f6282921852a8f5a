"""Configs are data: loading one imports no JAX and no mmjax module but mmjax.errors; every config and its
smoke variant load, every sweep is valid, and the names a config lists by hand agree with mmjax's."""
import ast
import glob
import json
import os
import subprocess
import sys

import pytest

from tests.helpers import REPO

CONFIGS = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(REPO, "configs", "*.py"))
                 if not p.endswith(("__init__.py", "common.py")))
HEAVY = ("jax", "flax", "optax", "orbax", "tensorflow_datasets", "grain", "numpy")


def test_loading_every_config_imports_no_jax_and_nothing_of_mmjax_but_errors(tmp_path):
  """In a fresh interpreter from another directory (the installed package, not the repo root)."""
  script = f"""
import importlib, json, sys
loaded = {{}}
for name in {CONFIGS!r}:
  module = importlib.import_module("configs." + name)
  loaded[name] = [module.get_config().total_steps, module.get_config("smoke").total_steps]
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})
mmjax = sorted(m for m in sys.modules if m.startswith("mmjax"))
print(json.dumps({{"loaded": loaded, "heavy": heavy, "mmjax": mmjax}}))
"""
  result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
  assert result.returncode == 0, result.stderr[-3000:]
  report = json.loads(result.stdout)
  assert sorted(report["loaded"]) == CONFIGS and all(smoke == 60 for _, smoke in report["loaded"].values())
  assert report["heavy"] == []
  assert report["mmjax"] == ["mmjax", "mmjax.errors"]


@pytest.mark.parametrize("name", CONFIGS)
def test_a_config_file_imports_only_common_ml_collections_and_the_standard_library(name):
  with open(os.path.join(REPO, "configs", f"{name}.py")) as f:
    tree = ast.parse(f.read())
  imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
  imported |= {f"{node.module}.{alias.name}" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
               for alias in node.names}
  allowed = {"configs.common", "mmjax.errors", "ml_collections"}
  assert {m for m in imported if m not in allowed and m.split(".")[0] not in sys.stdlib_module_names} == set()


def test_sweeps_are_valid_and_hand_kept_names_agree_with_mmjax():
  from configs import av_digits, common, shapes_vqa
  from mmjax import ablation, models
  from mmjax.data import shapes

  assert set(common.FUSIONS) == set(models.FUSIONS)
  assert shapes_vqa.QUESTION_TYPES == shapes.QUESTION_TYPES  # The headline sweep's per-type accuracies.
  assert set(common.TOKEN_FUSIONS) == set(models.TOKEN_LEVEL)
  # Every encoder trained from scratch; the pretrained-only towers (EfficientNet-Lite, precomputed features,
  # Whisper's 16 kHz encoder) are not part of AV-Digits' 28×28 / 8 kHz sweep.
  pretrained_only = {"efficientnet_lite", "features", "whisper"}
  assert {name: sorted(blocks) for name, blocks in (("image", av_digits.IMAGE_ENCODERS),
                                                    ("audio", av_digits.AUDIO_ENCODERS))} == {
      name: sorted(set(models.ENCODERS[name]) - pretrained_only) for name in ("image", "audio")}
  for name in CONFIGS:
    for sweep in getattr(__import__(f"configs.{name}", fromlist=["SWEEPS"]), "SWEEPS", {}):
      assert ablation.load_sweep(os.path.join(REPO, "configs", f"{name}.py"), sweep).points


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_keeps_the_resume_rules_and_one_selector_key(name):
  """Block selectors are `name` (never `type` or `kind`), and each config carries the resume-safe keys."""
  module = __import__(f"configs.{name}", fromlist=["get_config"])
  from configs import common

  for arg in (None, "smoke"):
    config = module.get_config(arg)
    assert tuple(config.resume_safe_keys) == common.RESUME_SAFE_KEYS
    flat = json.dumps(config.to_dict(), default=str)
    assert '"type":' not in flat and '"kind":' not in flat


def test_vqa_decoder_head_defaults_to_the_relations_recipe_and_the_classifier_to_the_plain_one():
  from configs import shapes_vqa
  decoder, classifier = shapes_vqa.get_config(), shapes_vqa.get_config("head=classifier")
  assert (decoder.total_steps, decoder.task.prompt, decoder.evals.test.every_steps) == (1500, "question", 750)
  assert dict(decoder.task.auxiliary) == dict(target="text", without=(), weight=1.0)
  assert (decoder.data.fresh_questions, tuple(decoder.data.question_type_weights), decoder.data.answer_len) == (
      True, (1, 1, 1, 1, 4, 2), 3)
  assert (classifier.total_steps, classifier.data.fresh_questions, tuple(classifier.data.question_type_weights),
          classifier.data.answer_len, classifier.evals.test.every_steps) == (1000, False, (), 2, 500)
  assert "prompt" not in classifier.task and "auxiliary" not in classifier.task
  blind = shapes_vqa.get_config("fusion=question_only")  # A unimodal decoder baseline: no recipe to read the image.
  assert "prompt" not in blind.task and "auxiliary" not in blind.task and blind.total_steps == 1000


def test_vqa_caption_weight_adds_the_caption_target_to_the_decoder_head_only():
  from configs import shapes_vqa
  from mmjax import errors
  config = shapes_vqa.get_config("caption_weight=0.5,prompt=false")
  assert dict(config.task.auxiliary) == dict(target="text", without=("question",), weight=0.5)
  assert config.model.decoder.max_len == config.data.text_len  # The caption's length, not the answer's.
  assert "auxiliary" not in shapes_vqa.get_config("caption_weight=0")["task"]
  with pytest.raises(errors.ConfigError, match="caption_weight=0.5 trains the decoder head to caption"):
    shapes_vqa.get_config("head=classifier,caption_weight=0.5")
  with pytest.raises(errors.ConfigError, match="Config arg 'caption_weight' expects float; got 'x'"):
    shapes_vqa.get_config("caption_weight=x")


def test_vqa_prompt_gives_the_decoder_the_question_and_room_for_it():
  from configs import shapes_vqa
  from mmjax import errors
  config = shapes_vqa.get_config("caption_weight=0")
  assert config.task.prompt == "question"
  assert config.model.decoder.max_len == config.data.question_len + config.data.answer_len
  captioning = shapes_vqa.get_config()
  assert captioning.model.decoder.max_len == captioning.data.question_len + captioning.data.text_len
  assert "prompt" not in shapes_vqa.get_config("prompt=false")["task"]
  with pytest.raises(errors.ConfigError, match="prompt=True gives the question to the decoder as its prompt"):
    shapes_vqa.get_config("head=classifier,prompt")
  with pytest.raises(errors.ConfigError, match="Config arg 'prompt' is a boolean; got 'maybe'"):
    shapes_vqa.get_config("prompt=maybe")


def test_video_qa_prompt_gives_the_decoder_the_question_and_room_for_it():
  from configs import moving_shapes
  from mmjax import errors
  config = moving_shapes.get_config("task=vqa,prompt=True")
  assert config.task.prompt == "question"
  assert config.model.decoder.max_len == config.data.question_len + config.data.answer_len
  assert "prompt" not in moving_shapes.get_config("task=vqa")["task"]
  with pytest.raises(errors.ConfigError, match="prompt=True gives the question to the decoder as its prompt"):
    moving_shapes.get_config("task=caption,prompt=True")
