"""mmjax.data.records: records parsed from their protos equal tfds' own deserialisation, field by field."""
import json

import ml_collections
import numpy as np
import pytest
from PIL import Image

from configs import common
from mmjax import data as mmdata
from mmjax.data import records, registry


def _folder_data(tmp_path) -> ml_collections.ConfigDict:
  """A folder of 6 PNGs whose rows have 1–3 captions, a question, an answer and a label."""
  root = tmp_path / "folder"
  root.mkdir()
  rows = []
  for index in range(6):
    Image.fromarray(np.full((8, 10, 3), 40 * index, np.uint8)).save(root / f"{index}.png")
    rows.append({"image": f"{index}.png", "captions": [f"caption {index} number {n}" for n in range(index % 3 + 1)],
                 "question": "which one", "answer": str(index), "label": "odd" if index % 2 else "even"})
  (root / "manifest.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
  return common.folder_data(path=str(root), data_dir=str(tmp_path / "tfds"), split_ratio="train=1.0")


@pytest.mark.parametrize("name", ["shapes", "av_digits", "folder"])
def test_parsed_records_are_tfds_records(name, shapes_data_dir, av_digits_data_dir, tmp_path):
  """Every field of up to 40 records (Shapes: PNG bytes, texts, scalars, [3] labels; AV-Digits: uint8 and int16
  tensors stored as bytes, bools; a folder: file bytes as a string tensor, lists of captions): the same type,
  dtype, shape and values as tfds gives."""
  if name == "shapes":
    config = common.shapes_data(smoke=True, text_len=24)
    config.data_dir = shapes_data_dir
  elif name == "av_digits":
    config = common.av_digits_data(variant="redundant", smoke=True)
    config.data_dir = av_digits_data_dir
  else:
    config = _folder_data(tmp_path)
  builder = mmdata.prepare(config)
  decoders = dict(registry.dataset(config).decoders)
  source = builder.as_data_source("train", decoders=decoders)
  parsed = records.parsed(source, builder.info.features, decoders)
  assert isinstance(parsed, records.ParsedRecords) and repr(parsed) == repr(source) and len(parsed) == len(source)
  keys = list(range(0, min(len(source), 200), 5))
  for expected, got in zip(source.__getitems__(keys), parsed.__getitems__(keys)):
    assert set(expected) == set(got)
    for field, value in expected.items():
      assert type(value) is type(got[field]), field
      assert np.asarray(value).dtype == np.asarray(got[field]).dtype and np.array_equal(value, got[field]), field
  assert parsed[5].keys() == expected.keys() and parsed.__getitems__([]) == []


def test_other_features_keep_tfds_reader(shapes_data_dir):
  """A feature of another kind (here an image tfds would decode) leaves the source as tfds reads it."""
  config = common.shapes_data(smoke=True, text_len=24)
  config.data_dir = shapes_data_dir
  builder = mmdata.prepare(config)
  source = builder.as_data_source("train")
  assert records.parsed(source, builder.info.features, {}) is source
