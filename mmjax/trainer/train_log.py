"""The train metrics of each step: fetched one step late, shown on the progress bar, checked to be finite and
averaged per log interval into metrics.jsonl and TensorBoard."""
from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Iterator, Mapping

import jax
import numpy as np
from tqdm import auto as tqdm

from mmjax import errors
from mmjax.trainer.checkpoint import Checkpointer
from mmjax.trainer.metric_writer import MetricWriter
from mmjax.trainer.run import say


def _in_notebook() -> bool:
  """Whether this process is a Jupyter kernel (its shell is ZMQInteractiveShell). Not `"ipykernel" in
  sys.modules`: a test process that ran a notebook has imported ipykernel without being one."""
  ipython = sys.modules.get("IPython")
  shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
  return type(shell).__name__ == "ZMQInteractiveShell"


class TrainLog:
  """Collects the metrics of the steps since the last log step (`interval`, saved with each checkpoint so that a
  resumed run averages the same steps as an uninterrupted one)."""

  def __init__(self, writer: MetricWriter, checkpointer: Checkpointer, *, step: int, total_steps: int,
               interval: list[dict[str, float]]):
    self.writer, self.checkpointer = writer, checkpointer
    self.interval = interval
    self._pending = None
    # A bar only where it redraws in place: a terminal or a notebook. Into a file or pipe each redraw would be one
    # more line (a carriage return), a hundred of them above a failed run's `error:` line; there each log step
    # says one plain line instead. A finished run that is resumed (to redo its final evals) shows no bar.
    self._plain = not (sys.stderr.isatty() or _in_notebook())
    self._progress = tqdm.tqdm(total=total_steps, initial=step, desc="train", unit="step", dynamic_ncols=True,
                               disable=jax.process_index() != 0 or step >= total_steps or self._plain)
    self._since, self._since_step = time.time(), step

  def add(self, step: int, metrics: Mapping[str, jax.Array]) -> None:
    """Records the step just dispatched; fetches the previous one only now, so the host prepares the next batch
    while the device still runs this step."""
    self._fetch_pending()
    self._pending = (step, metrics)

  def flush(self) -> list[dict[str, float]]:
    """Fetches the pending step and raises NonFiniteError on a non-finite loss or gradient norm, before anything
    of it is logged or checkpointed; returns the interval's metrics."""
    self._fetch_pending()
    for metrics in self.interval:
      bad = [k for k in ("loss", "grad_norm") if not math.isfinite(metrics[k])]
      if bad:
        last = self.checkpointer.latest_step()
        kept = (f"the last good checkpoint (step {last}) is kept in {self.writer.workdir}" if last is not None
                else "no checkpoint had been written yet")
        raise errors.NonFiniteError(
            f"Non-finite {bad[0]} ({metrics[bad[0]]}) at step {metrics['step']}; stopping, {kept}. Lower "
            "config.optim.lr, raise config.optim.warmup_steps or check the input data.")
    return self.interval

  def summarize(self, step: int) -> None:
    """Writes the interval's mean metrics and the training speed at `step`, and starts a new interval."""
    interval = self.flush()
    summary = {f"train/{k}": float(np.mean([m[k] for m in interval])) for k in interval[0] if k != "step"}
    summary["train/steps_per_s"] = (step - self._since_step) / (time.time() - self._since)
    self.writer.write(step, summary)
    if self._plain:
      say(f"step {step} train: loss {summary['train/loss']:.4g}, {summary['train/steps_per_s']:.2f} step/s")
    self.interval, self._since, self._since_step = [], time.time(), step

  @contextlib.contextmanager
  def paused(self) -> Iterator[None]:
    """Time spent inside (evaluating) does not count against steps_per_s, which measures training."""
    start = time.time()
    try:
      yield
    finally:
      self._since += time.time() - start

  def close(self) -> None:
    self._progress.close()

  def _fetch_pending(self) -> None:
    if self._pending is None:
      return
    step, metrics = self._pending
    self._pending = None
    values = {k: float(v) for k, v in jax.device_get(metrics).items()}
    self.interval.append({"step": step, **values})
    self._progress.update(step - self._progress.n)
    self._progress.set_postfix(loss=f"{values['loss']:.4f}", refresh=False)
