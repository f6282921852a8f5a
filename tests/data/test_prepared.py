"""A tfds dataset prepared elsewhere, opened by name through a field mapping (mmjax.data.prepared)."""
import io
import json
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from configs import common
from mmjax import data as mmdata
from mmjax import errors
from mmjax.data.generated import GeneratedBuilder

FIELDS = {"image": "image", "captions": "captions/text", "id": "image_id", "label": "kind"}


class TinyCaptions(GeneratedBuilder, skip_registration=True):
  """Shaped like tfds' coco_captions: an image, its id, a sequence of {text, id} captions, and a ClassLabel."""
  VERSION = tfds.core.Version("1.0.0")

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(None, None, 3), encoding_format="png"),
        "image_id": tfds.features.Scalar(dtype=np.int64),
        "captions": tfds.features.Sequence({"text": tfds.features.Text(), "id": tfds.features.Scalar(dtype=np.int64)}),
        "kind": tfds.features.ClassLabel(names=["red", "blue"])}))

  def _split_generators(self, dl_manager):
    return {"train": self._generate_examples(32, 0), "validation": self._generate_examples(8, 100)}

  def _generate_examples(self, count, first_id):
    for i in range(count):
      name = ("red", "blue")[i % 2]
      png = io.BytesIO()
      Image.new("RGB", (40 + i, 30), (200, 0, 0) if name == "red" else (0, 0, 200)).save(png, format="PNG")
      yield i, {"image": png.getvalue(), "image_id": first_id + i, "kind": i % 2,
                "captions": [{"text": f"a {name} box", "id": 1}, {"text": f"one {name} picture", "id": 2}]}


@pytest.fixture(scope="module")
def prepared_dir(tmp_path_factory) -> str:
  data_dir = str(tmp_path_factory.mktemp("prepared"))
  TinyCaptions(data_dir=data_dir).download_and_prepare(file_format="array_record")
  return data_dir


def test_records_are_read_through_the_field_mapping(prepared_dir):
  data = common.prepared_data(tfds_name="tiny_captions", fields=FIELDS, data_dir=prepared_dir, image_size=32,
                              text_len=8)
  assert mmdata.label_names(data)["label"] == ["red", "blue"]  # The dataset's own ClassLabel names.
  batch = next(mmdata.eval_batches(data, "validation", batch_size=8))
  by_id = {int(i): row for row, i in enumerate(batch["id"])}
  assert sorted(by_id) == list(range(100, 108))
  row = by_id[103]
  assert batch["caption"][row] == "a blue box" and batch["label"][row] == 1
  tokenizer = mmdata.get_tokenizer(data)
  assert [tokenizer.decode(ids) for ids in batch["caption_refs"][row]] == ["a blue box", "one blue picture"]
  np.testing.assert_allclose(batch["image"][row][0, 0], (np.array([0, 0, 200]) / 255 - 0.5) / 0.5, atol=1e-6)
  cached = os.listdir(os.path.join(prepared_dir, "mmjax_metadata"))
  with open(os.path.join(prepared_dir, "mmjax_metadata", cached[0])) as f:
    assert json.load(f)["vocab"] == ["a", "blue", "box", "one", "picture", "red"]


def test_a_missing_dataset_or_feature_is_named(prepared_dir, tmp_path):
  with pytest.raises(errors.ConfigError, match="config.data.tfds_name='coco_captions': no such dataset prepared in"):
    mmdata.prepare(common.prepared_data(tfds_name="coco_captions", fields=FIELDS, data_dir=str(tmp_path)))
  with pytest.raises(errors.ConfigError, match=r"config.data.fields.captions='caption' is not a feature of "
                                               r"tiny_captions/1.0.0; its features: \['captions', 'image'"):
    mmdata.prepare(common.prepared_data(tfds_name="tiny_captions", fields={**FIELDS, "captions": "caption"},
                                        data_dir=prepared_dir))


def test_the_training_view_of_a_prepared_dataset(prepared_dir):
  """What a run is built from (the folder operations do the rest, trained end to end in the notebook's test)."""
  data = common.prepared_data(tfds_name="tiny_captions", fields=FIELDS, data_dir=prepared_dir, image_size=32,
                              text_len=8)
  spec = mmdata.element_spec(data)
  assert {k: v.shape for k, v in spec.items()} == {"image": (32, 32, 3), "text": (8,), "label": ()}
  batch = next(mmdata.train_loader(data, batch_size=4, seed=0))
  assert batch["image"].shape == (4, 32, 32, 3) and mmdata.get_tokenizer(data).vocab_size == 10


def test_regenerate_never_deletes_a_prepared_dataset(prepared_dir):
  data = common.prepared_data(tfds_name="tiny_captions", fields=FIELDS, data_dir=prepared_dir)
  before = sorted(os.listdir(os.path.join(prepared_dir, "tiny_captions", "1.0.0")))
  mmdata.prepare(data, regenerate=True)
  assert sorted(os.listdir(os.path.join(prepared_dir, "tiny_captions", "1.0.0"))) == before
