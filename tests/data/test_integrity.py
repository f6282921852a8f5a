"""A damaged dataset is refused when it is opened, before anything compiles, with one message that names the file
and how to regenerate it; `regenerate` (the scripts' --regenerate_data) deletes that dataset's version folder, and
nothing else, and generates it again.

The damaged datasets are copies of the session's small Shapes data (never the shared one) and tiny Fashion-MNIST
datasets generated from idx files the tests write (0.1 s each)."""
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from configs import common
from mmjax import data as mmdata
from mmjax import errors
from mmjax.data import integrity
from tests.data.test_fashion_mnist import data_config as fashion_config
from tests.data.test_fashion_mnist import write_idx_files
from tests.helpers import REPO, smoke_config

SHAPES_TRAIN_SHARD = "shapes/small/1.1.0/shapes-train.array_record-00000-of-00001"


def _truncate(path) -> None:
  with open(path, "r+b") as f:
    f.truncate(os.path.getsize(path) // 2)


def _flip_a_bit(path) -> None:
  """One bit in the middle of the records (a flip in the zero padding after the last chunk is never read, and
  harmless)."""
  data = bytearray(open(path, "rb").read())
  offset = len(data.rstrip(b"\0")) // 2
  data[offset] ^= 0x10
  open(path, "wb").write(data)


DAMAGES = {"truncated": (_truncate, "Failed to read RiegeliPostscript"),
           "bit-flipped": (_flip_a_bit, "chunk data hash mismatch")}


@pytest.fixture
def shapes_copy(shapes_data_dir, tmp_path):
  """A data_dir holding a copy of the session's small Shapes dataset, free to damage."""
  shutil.copytree(os.path.join(shapes_data_dir, "shapes"), tmp_path / "data" / "shapes")
  config = common.shapes_data(smoke=True, text_len=18)
  config.data_dir = str(tmp_path / "data")
  return config


@pytest.fixture
def fashion(tmp_path):
  """(data config, written idx arrays) of a tiny Fashion-MNIST, prepared."""
  (tmp_path / "source").mkdir()
  written = write_idx_files(tmp_path / "source")
  config = fashion_config(tmp_path / "source", tmp_path / "data", classes="")
  mmdata.prepare(config)
  return config, written


def _shard(config, split: str) -> str:
  return mmdata.prepare(config).info.splits[split].file_instructions[0].filename


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_shard_is_refused_at_open_naming_the_file_and_the_fix(shapes_copy, damage):
  damage_fn, riegeli_reason = DAMAGES[damage]
  path = os.path.join(shapes_copy.data_dir, SHAPES_TRAIN_SHARD)
  damage_fn(path)
  with pytest.raises(errors.InputError) as raised:
    mmdata.prepare(shapes_copy)
  message = str(raised.value)
  assert "\n" not in message
  assert message.startswith(f"Dataset file {path} is damaged (") and riegeli_reason in message, message
  version_folder = os.path.join(shapes_copy.data_dir, "shapes/small/1.1.0")
  assert f"Rerun with --regenerate_data to delete {version_folder} (that folder only)" in message


def test_a_missing_shard_or_a_wrong_record_count_is_refused(fashion, tmp_path):
  config, _ = fashion
  train, test = _shard(config, "train"), _shard(config, "test")
  integrity._intact.clear()  # The fixture's prepare found it whole; look again.
  shutil.copy(test, train)  # A whole ArrayRecord file, but of 20 records where 40 are listed.
  with pytest.raises(errors.InputError, match=re.escape(f"{train} holds 20 records where dataset_info.json lists 40")):
    mmdata.prepare(config)
  os.remove(train)
  with pytest.raises(errors.InputError, match=re.escape(f"Dataset file {train} is missing.")):
    mmdata.num_examples(config, "test")


def test_a_whole_dataset_is_read_once_per_process(fashion, monkeypatch):
  config, _ = fashion
  integrity._intact.clear()
  checks = []
  monkeypatch.setattr(integrity, "find_problem", lambda builder: checks.append(builder.data_dir))
  mmdata.prepare(config)
  mmdata.num_examples(config, "train")
  mmdata.label_names(config)
  list(mmdata.eval_batches(config, "test", batch_size=8))
  assert checks == [mmdata.prepare(config).data_dir]


def test_regenerate_replaces_only_the_damaged_version_folder_and_keeps_a_whole_one(fashion, tmp_path):
  config, written = fashion
  version_folder = mmdata.prepare(config).data_dir
  neighbours = [tmp_path / "data" / "fashion_mnist" / "default" / "0.9.0" / "keep", tmp_path / "data" / "keep"]
  for path in neighbours:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("not the dataset's")
  train = _shard(config, "train")
  mtime = os.path.getmtime(train)
  said = []
  integrity._intact.clear()
  mmdata.prepare(config, announce=said.append, regenerate=True)  # Whole: kept as is.
  assert not said and os.path.getmtime(train) == mtime

  integrity._intact.clear()
  _flip_a_bit(train)
  mmdata.prepare(config, announce=said.append, regenerate=True)
  assert said[0].startswith(f"Dataset file {train} is damaged (") and said[0].endswith(
      f": deleting {version_folder} and generating it again."), said
  assert all(path.read_text() == "not the dataset's" for path in neighbours)
  assert integrity.find_problem(mmdata.prepare(config)) is None
  source = mmdata.prepare(config).as_data_source("train")
  np.testing.assert_array_equal(np.stack([source[i]["image"] for i in range(len(source))]), written["train"][0])


def test_evaluate_regenerates_the_data_of_a_stored_config_on_request(shapes_copy, tmp_path):
  """--regenerate_data reaches prepare from a script (experiments.evaluate: the stored config of a workdir); the
  workdir has no checkpoint, so evaluate then stops with its own one-line error."""
  _truncate(os.path.join(shapes_copy.data_dir, SHAPES_TRAIN_SHARD))
  workdir = tmp_path / "workdir"
  workdir.mkdir()
  config = smoke_config(shapes_copy.data_dir)
  (workdir / "config.json").write_text(json.dumps(config.to_dict()))
  result = subprocess.run([sys.executable, "-m", "experiments.evaluate", f"--workdir={workdir}", "--regenerate_data"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
  assert "Traceback" not in result.stderr, result.stderr[-3000:]
  train_shard = os.path.join(shapes_copy.data_dir, SHAPES_TRAIN_SHARD)
  assert f"Dataset file {train_shard} is damaged (" in result.stderr, result.stderr[-3000:]
  assert "deleting" in result.stderr and "Generated shapes/small/1.1.0" in result.stderr, result.stderr[-3000:]
  assert integrity.find_problem(mmdata.prepare(shapes_copy)) is None
