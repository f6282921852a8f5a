"""Test setup: 8 fake CPU devices (before jax initialises) and a small Shapes dataset.

Every test sees 8 CPU devices (single-device code paths build a 1-device mesh); the scripts tests start see
helpers.SCRIPT_DEVICES unless a test asks otherwise.
The small Shapes variant is generated once per session into a temporary directory, and
the contrastive smoke run that several tests read (and fine-tune from) is trained once, as are the caption and
VQA smoke runs.
"""
import os
import tempfile

from tests import helpers  # Reads XLA_FLAGS as the user set them.

os.environ["XLA_FLAGS"] = helpers.xla_flags(8)
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One persistent compilation cache for every test process (xdist workers and the scripts tests
# launch): a program compiled once, such as the smoke train step that many tests and training
# subprocesses build, is then loaded instead of recompiled. Keys hash the program and devices.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(),
                                                                f"mmjax-test-compilation-cache-{os.getuid()}"))
os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(2 * 1024**3))  # Bytes; least recently used go.

import collections  # noqa: E402

import jax  # noqa: E402

jax.devices()  # Starts the backend, which reads XLA_FLAGS once: 8 devices here; then the scripts' flags.
os.environ["XLA_FLAGS"] = helpers.xla_flags()

import pytest  # noqa: E402
from absl import flags  # noqa: E402

# Grain 0.2.18 reads an absl flag when it starts loader workers; the scripts parse flags, pytest does not.
flags.FLAGS.mark_as_parsed()

# How often the persistent compilation cache serves a compile of the test processes (not of the scripts they
# start), summed over the xdist workers and shown at the end of the run.
_cache_counts: collections.Counter = collections.Counter()


def _count_cache_event(event: str, **kwargs) -> None:
  if event.startswith("/jax/compilation_cache/"):
    _cache_counts[event.rpartition("/")[2]] += 1


# Where the test processes' compile time goes (seconds, summed over workers): tracing to a jaxpr, lowering it to
# MLIR, and XLA's backend compile, the suite's largest cost on a 2-core CPU (scripts the tests start not counted).
_COMPILE_STAGES = {"/jax/core/compile/jaxpr_trace_duration": "trace_s",
                   "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower_s",
                   "/jax/core/compile/backend_compile_duration": "backend_s"}


def _count_durations(event: str, seconds: float, **kwargs) -> None:
  if event == "/jax/compilation_cache/compile_time_saved_sec":
    _cache_counts["saved_s"] += seconds
  elif event in _COMPILE_STAGES:
    _cache_counts[_COMPILE_STAGES[event]] += seconds


jax.monitoring.register_event_listener(_count_cache_event)
jax.monitoring.register_event_duration_secs_listener(_count_durations)


@pytest.hookimpl(tryfirst=True)  # Before xdist's own hook, which turns the marks into scheduling groups.
def pytest_collection_modifyitems(config, items):
  """Keeps each test file on one xdist worker (as `--dist loadfile` would) unless its tests name a group: a
  module's fixtures and cached compiles are then built once, not once per worker (the two workers used to
  compile the same module-scoped models twice). Starts the slow tests first."""
  del config
  for item in items:
    if not any(item.iter_markers("xdist_group")):
      item.add_marker(pytest.mark.xdist_group(item.nodeid.partition("::")[0]))
  # The slow groups first (xdist hands out groups in collection order): the short ones then fill in around
  # them, instead of one long group running alone at the end while the other worker idles.
  items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_sessionfinish(session):
  if hasattr(session.config, "workeroutput"):  # An xdist worker: hand the counts to the controller.
    session.config.workeroutput["compilation_cache"] = dict(_cache_counts)


def pytest_testnodedown(node, error):
  del error
  _cache_counts.update(getattr(node, "workeroutput", {}).get("compilation_cache", {}))


def pytest_terminal_summary(terminalreporter):
  requests = _cache_counts["compile_requests_use_cache"]
  if requests:
    terminalreporter.write_line(
        f"compilation cache (test processes): {_cache_counts['cache_hits']} of {requests} compiles were hits, "
        f"saving {_cache_counts['saved_s']:.0f} s of compile time")
  terminalreporter.write_line(
      "compile time (test processes, summed over workers): "
      + ", ".join(f"{name} {_cache_counts[name]:.0f} s" for name in _COMPILE_STAGES.values()))


def _shared_data_dir(tmp_path_factory, name: str) -> str:
  """A data_dir that both xdist workers of this session share (mmdata.prepare takes turns through a lock file, so
  the first to need a dataset generates it and the other finds it ready); without xdist, this session's own.
  Tests that damage a dataset do so to a copy (tests/data/test_integrity.py)."""
  base = tmp_path_factory.getbasetemp()
  return str((base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / f"shared-{name}")


@pytest.fixture(scope="session")
def shapes_data_dir(tmp_path_factory) -> str:
  """A data_dir holding the prepared `shapes/small` dataset."""
  from mmjax import data as mmdata
  from configs import common

  data_dir = _shared_data_dir(tmp_path_factory, "tfds")
  data_config = common.shapes_data(smoke=True, text_len=18)
  data_config.data_dir = data_dir
  mmdata.prepare(data_config)
  return data_dir


@pytest.fixture(scope="session")
def av_digits_data_dir(tmp_path_factory) -> str:
  """A data_dir holding the prepared `av_digits/redundant_small` dataset."""
  from mmjax import data as mmdata
  from configs import common

  data_dir = _shared_data_dir(tmp_path_factory, "tfds_av_digits")
  data_config = common.av_digits_data(variant="redundant", smoke=True)
  data_config.data_dir = data_dir
  mmdata.prepare(data_config)
  return data_dir


@pytest.fixture(scope="session")
def moving_shapes_data_dir(tmp_path_factory) -> str:
  """A data_dir holding the prepared `moving_shapes/small` dataset (384 clips, ~3 s)."""
  from mmjax import data as mmdata
  from configs import common

  data_dir = _shared_data_dir(tmp_path_factory, "tfds_moving_shapes")
  data_config = common.moving_shapes_data(smoke=True)
  data_config.data_dir = data_dir
  mmdata.prepare(data_config)
  return data_dir


@pytest.fixture(scope="session")
def sentiment_data_dir(tmp_path_factory) -> str:
  """A data_dir holding the prepared `sentiment/small` dataset."""
  from mmjax.data import sentiment

  data_dir = str(tmp_path_factory.mktemp("tfds_sentiment"))
  sentiment.Sentiment(config="small", data_dir=data_dir).download_and_prepare(file_format="array_record")
  return data_dir


@pytest.fixture(scope="session")
def clip_smoke_run(shapes_data_dir, tmp_path_factory) -> tuple[str, dict]:
  """(workdir, final metrics) of `configs/shapes_clip.py:smoke` trained from the command line; the final
  metrics as the run wrote them to final_metrics.json, after checking the script printed the same."""
  import json
  import os

  from tests.helpers import run_module

  workdir = str(tmp_path_factory.mktemp("clip_smoke"))
  result = run_module("experiments.train", "--config=configs/shapes_clip.py:smoke",
                      f"--config.data.data_dir={shapes_data_dir}", f"--workdir={workdir}")
  with open(os.path.join(workdir, "final_metrics.json")) as f:
    final = json.load(f)
  printed = json.loads(result.stdout[result.stdout.index("{"):])
  assert printed == {"workdir": workdir, **{k: v for k, v in final.items() if k != "step"}}
  return workdir, final


def _task_smoke_config(module, data_dir: str, **overrides):
  """`module`'s smoke config on the test dataset for 40 steps, evaluated on the first 128 test and heldout
  examples (at the end, unless `overrides` say otherwise)."""
  from tests.helpers import smoke_config

  return smoke_config(data_dir, module, total_steps=40, **{
      "evals.test.every_steps": 0, "evals.heldout.every_steps": 0, "evals.test.split": "test[:128]",
      "evals.heldout.split": "heldout[:128]", **overrides})


@pytest.fixture(scope="session")
def caption_smoke_run(clip_smoke_run, shapes_data_dir, tmp_path_factory) -> tuple:
  """(config, workdir, final metrics) of `configs/shapes_caption.py:smoke` fine-tuned in-process for 40 steps from
  the contrastive smoke run, its image tower frozen; on as many devices as that run (helpers.SCRIPT_DEVICES)."""
  from configs import shapes_caption
  from mmjax import trainer

  config = _task_smoke_config(shapes_caption, shapes_data_dir, init_from=clip_smoke_run[0], freeze="image")
  workdir = str(tmp_path_factory.mktemp("caption_smoke"))
  return config, workdir, trainer.train(config, workdir, devices=jax.devices()[:helpers.SCRIPT_DEVICES])


@pytest.fixture(scope="session")
def vqa_smoke_run(shapes_data_dir, tmp_path_factory) -> tuple:
  """(config, workdir, final metrics) of `configs/shapes_vqa.py:smoke` trained in-process for 40 steps with two
  rounds of evals (at 20 and at the end, the last batch padded), where tracing the train step or the decoding
  loop a second time raises (chex.assert_max_traces)."""
  import chex

  from configs import shapes_vqa
  from mmjax import tasks, trainer
  from mmjax.trainer import run as run_lib

  config = _task_smoke_config(shapes_vqa, shapes_data_dir, **{"evals.test.every_steps": 20,
                                                             "evals.heldout.every_steps": 20})
  workdir = str(tmp_path_factory.mktemp("vqa_smoke"))
  with pytest.MonkeyPatch.context() as monkeypatch:
    make_train_step = run_lib.make_train_step
    monkeypatch.setattr(run_lib, "make_train_step",
                        lambda *args, **kwargs: chex.assert_max_traces(make_train_step(*args, **kwargs), n=1))
    predict_fns = tasks.GenerationTask.predict_fns
    monkeypatch.setattr(tasks.GenerationTask, "predict_fns",
                        lambda self: {k: chex.assert_max_traces(fn, n=1) for k, fn in predict_fns(self).items()})
    return config, workdir, trainer.train(config, workdir, devices=jax.devices()[:helpers.SCRIPT_DEVICES])
