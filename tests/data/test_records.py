"""mmjax.data.records: records parsed from their protos equal tfds' own deserialisation, field by field."""
import numpy as np
import pytest
import tensorflow_datasets as tfds

from configs import common
from mmjax import data as mmdata
from mmjax.data import records, registry


@pytest.mark.parametrize("name", ["shapes", "av_digits"])
def test_parsed_records_are_tfds_records(name, shapes_data_dir, av_digits_data_dir):
  """Every field of 40 records (Shapes: PNG bytes, texts, scalars, [3] labels; AV-Digits: uint8 and int16 tensors
  stored as bytes, bools): the same type, dtype, shape and values as tfds gives."""
  if name == "shapes":
    config = common.shapes_data(smoke=True, text_len=24)
    config.data_dir = shapes_data_dir
  else:
    config = common.av_digits_data(variant="redundant", smoke=True)
    config.data_dir = av_digits_data_dir
  builder = mmdata.prepare(config)
  decoders = dict(registry.dataset(config).decoders)
  source = builder.as_data_source("train", decoders=decoders)
  parsed = records.parsed(source, builder.info.features, decoders)
  assert isinstance(parsed, records.ParsedRecords) and repr(parsed) == repr(source) and len(parsed) == len(source)
  keys = list(range(0, 200, 5))
  for expected, got in zip(source.__getitems__(keys), parsed.__getitems__(keys)):
    assert set(expected) == set(got)
    for field, value in expected.items():
      assert type(value) is type(got[field]), field
      assert np.asarray(value).dtype == np.asarray(got[field]).dtype and np.array_equal(value, got[field]), field
  assert parsed[5].keys() == expected.keys() and parsed.__getitems__([]) == []


def test_other_features_keep_tfds_reader(shapes_data_dir):
  """A feature of another kind (here a sequence of texts, as a folder dataset's captions) leaves the source as
  tfds reads it."""
  config = common.shapes_data(smoke=True, text_len=24)
  config.data_dir = shapes_data_dir
  source = mmdata.prepare(config).as_data_source("train")
  features = tfds.features.FeaturesDict({"captions": tfds.features.Sequence(tfds.features.Text())})
  assert records.parsed(source, features, {}) is source
