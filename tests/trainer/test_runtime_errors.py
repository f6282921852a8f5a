"""A training run that fails while it runs: out of memory, or a loss gone non-finite. Each ends in one
`error:` line (the scripts print it through errors.reported_to_user) with nothing above it that is noise."""
import types

import jax
import numpy as np
import pytest

from mmjax import errors, trainer
from mmjax.trainer import loop
from mmjax.trainer.metric_writer import MetricWriter
from mmjax.trainer.run import Run
from mmjax.trainer.train_log import TrainLog
from tests.helpers import smoke_config

# What XLA raises when a program's buffers do not fit (here: the smoke step at batch 16384 under `ulimit -v 6291456`).
XLA_OUT_OF_MEMORY = "RESOURCE_EXHAUSTED: Out of memory allocating 24698781892 bytes."


def _stderr_lines(capsys) -> list[str]:
  """stderr as a terminal would show it, one line per carriage return too (as `subprocess.run(text=True)` reads
  a progress bar's redraws)."""
  return capsys.readouterr().err.replace("\r", "\n").splitlines()


def test_a_train_step_out_of_memory_is_one_line_naming_the_batch_size_and_the_fixes(shapes_data_dir, tmp_path,
                                                                                   monkeypatch, capsys):
  """The compile or the step raising RESOURCE_EXHAUSTED, caught in the train loop (no step is compiled here)."""
  def out_of_memory_step(run):
    def step(state, batch):
      raise jax.errors.JaxRuntimeError(XLA_OUT_OF_MEMORY)
    return step

  monkeypatch.setattr(Run, "jit_train_step", out_of_memory_step)
  with pytest.raises(SystemExit) as exit_info, errors.reported_to_user():
    trainer.train(smoke_config(shapes_data_dir), str(tmp_path / "run"))
  assert exit_info.value.code == errors.UserError.exit_code
  assert _stderr_lines(capsys) == [
      f"error: Out of memory training with config.batch_size=64 ({XLA_OUT_OF_MEMORY}). Lower config.batch_size; "
      "or, if one batch of inputs fits, keep it and split each step into micro-batches with config.grad_accum_steps "
      "(now 1), or recompute activations in the backward pass with config.model.remat (now 'none'; one of "
      "['none', 'full', 'dots', 'dots_no_batch'])."]


def test_an_evaluator_out_of_host_memory_names_the_eval_batch_size():
  def run(params):
    raise MemoryError("Unable to allocate 1.69 GiB for an array with shape (65536, 48, 48, 3) and data type float32")

  evaluator = types.SimpleNamespace(batch_size=256, run=run, headline=())
  state = types.SimpleNamespace(params={})
  with pytest.raises(errors.OutOfMemoryError, match=r"^Out of memory evaluating test with config.eval_batch_size="
                                                    r"256 \(Unable to allocate 1.69 GiB .*\). Lower "
                                                    r"config.eval_batch_size.$"):
    loop.evaluate_at(10, state, {"test": evaluator}, ["test"], writer=None)


@pytest.mark.parametrize("error", [jax.errors.JaxRuntimeError("INTERNAL: a bug in a kernel"), ValueError("a bug")])
def test_errors_other_than_out_of_memory_pass_unchanged(error):
  with pytest.raises(type(error)) as raised, loop.out_of_memory_reported("training", "advice"):
    raise error
  assert raised.value is error


class _Checkpointer:
  def latest_step(self) -> int:
    return 12


def test_a_diverged_run_says_its_progress_in_plain_lines_and_its_error_last(tmp_path, capsys):
  """Written to a pipe (as here), the progress bar's redraws would be a hundred lines above the error; instead each
  log step says one line, and the NonFiniteError is the last."""
  log = TrainLog(MetricWriter(str(tmp_path)), _Checkpointer(), step=12, total_steps=60, interval=[])
  for step in range(13, 19):
    log.add(step, {"loss": np.float32(np.nan if step == 18 else 2.0), "grad_norm": np.float32(1.0)})
    if step == 16:
      log.summarize(step)
  with pytest.raises(SystemExit) as exit_info, errors.reported_to_user():
    log.summarize(20)
  log.close()
  assert exit_info.value.code == errors.NonFiniteError.exit_code
  progress, error = _stderr_lines(capsys)
  assert progress.startswith("step 16 train: loss 2, ") and progress.endswith(" step/s")
  assert error.startswith("error: Non-finite loss (nan) at step 18; stopping, the last good checkpoint (step 12) "
                          f"is kept in {tmp_path}.")
