"""Test setup: 8 fake CPU devices (before jax initialises) and a small Shapes dataset.

Every test sees 8 CPU devices; single-device code paths build a 1-device mesh.
The small Shapes variant is generated once per session into a temporary directory, and
the contrastive smoke run that several tests read (and fine-tune from) is trained once.
"""
import os
import tempfile

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One persistent compilation cache for every test process (xdist workers and the scripts tests
# launch): a program compiled once, such as the smoke train step that many tests and training
# subprocesses build, is then loaded instead of recompiled. Keys hash the program and devices.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(),
                                                                f"mmjax-test-compilation-cache-{os.getuid()}"))
os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(2 * 1024**3))  # Bytes; least recently used go.

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def shapes_data_dir(tmp_path_factory) -> str:
  """A data_dir holding the prepared `shapes/small` dataset."""
  from mmjax import data as mmdata
  from configs import common

  data_dir = str(tmp_path_factory.mktemp("tfds"))
  mmdata.prepare(common.shapes_data_config(variant="small", data_dir=data_dir))
  return data_dir


@pytest.fixture(scope="session")
def av_digits_data_dir(tmp_path_factory) -> str:
  """A data_dir holding the prepared `av_digits/redundant_small` dataset."""
  from mmjax import data as mmdata
  from configs import common

  data_dir = str(tmp_path_factory.mktemp("tfds_av_digits"))
  mmdata.prepare(common.av_digits_data_config(variant="redundant_small", data_dir=data_dir))
  return data_dir


@pytest.fixture(scope="session")
def clip_smoke_run(shapes_data_dir, tmp_path_factory) -> tuple[str, dict]:
  """(workdir, final metrics) of `configs/shapes_clip.py:smoke` trained from the command line."""
  import json

  from tests.helpers import run_module

  workdir = str(tmp_path_factory.mktemp("clip_smoke"))
  result = run_module("experiments.train", "--config=configs/shapes_clip.py:smoke",
                      f"--config.data.data_dir={shapes_data_dir}", f"--workdir={workdir}")
  return workdir, json.loads(result.stdout[result.stdout.index("{"):])
