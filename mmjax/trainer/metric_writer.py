"""Metrics to TensorBoard (TF-free, via tensorboardX) and to `<workdir>/metrics.jsonl`."""
import json
import os
from collections.abc import Mapping

import jax
from tensorboardX import SummaryWriter

FINAL_METRICS_FILE = "final_metrics.json"


class MetricWriter:
  """Writes scalars from process 0 only; other processes get a writer that does nothing."""

  def __init__(self, workdir: str):
    self.workdir = workdir
    self.enabled = jax.process_index() == 0
    self.jsonl_path = os.path.join(workdir, "metrics.jsonl")
    self._tensorboard_dir = os.path.join(workdir, "tensorboard")
    self._tensorboard = None
    self._purge_step = None

  @property
  def tensorboard(self) -> SummaryWriter:
    """Opened on first write, so that a resume can first ask it to purge the redone steps."""
    if self._tensorboard is None:
      self._tensorboard = SummaryWriter(self._tensorboard_dir, purge_step=self._purge_step)
    return self._tensorboard

  def truncate_after(self, step: int, keep_evals_at_step: bool = True) -> None:
    """Drops rows past `step` (and, unless `keep_evals_at_step`, eval rows at `step`): after a
    resume those are computed again and re-logged, so keeping them would leave duplicates in
    metrics.jsonl. A torn last line (a crash mid-write) is dropped too."""
    self._purge_step = step + 1  # TensorBoard hides events from earlier runs at these steps.
    if not self.enabled:
      return
    final = os.path.join(os.path.dirname(self.jsonl_path), FINAL_METRICS_FILE)
    if os.path.exists(final):
      os.remove(final)  # The run goes on, so its final metrics are yet to come.
    if not os.path.exists(self.jsonl_path):
      return

    def keep(row: dict) -> bool:
      is_eval = any(key.startswith("eval/") for key in row)
      return row["step"] < step or (row["step"] == step and (keep_evals_at_step or not is_eval))

    rows = []
    with open(self.jsonl_path) as f:
      for line in f:
        try:
          row = json.loads(line)
        except json.JSONDecodeError:
          continue
        if keep(row):
          rows.append(line if line.endswith("\n") else line + "\n")
    tmp = self.jsonl_path + ".tmp"
    with open(tmp, "w") as f:
      f.writelines(rows)
    os.replace(tmp, self.jsonl_path)

  def write(self, step: int, scalars: Mapping[str, float]) -> None:
    if not self.enabled:
      return
    for name, value in scalars.items():
      self.tensorboard.add_scalar(name, value, step)
    with open(self.jsonl_path, "a") as f:
      f.write(json.dumps({"step": step, **{k: float(v) for k, v in scalars.items()}}) + "\n")

  def write_final(self, step: int, metrics: Mapping[str, float]) -> None:
    """`final_metrics.json`: the final step and metrics of a finished run, written atomically last, so
    its presence means the run is complete (the ablation runner reads it)."""
    if not self.enabled:
      return
    path = os.path.join(os.path.dirname(self.jsonl_path), FINAL_METRICS_FILE)
    with open(path + ".tmp", "w") as f:
      json.dump({"step": step, **{k: float(v) for k, v in metrics.items()}}, f, indent=1, sort_keys=True)
    os.replace(path + ".tmp", path)

  def close(self) -> None:
    if self._tensorboard is not None:
      self._tensorboard.close()
