"""Metrics to TensorBoard (TF-free, via tensorboardX) and to `<workdir>/metrics.jsonl`."""
import json
import os
from collections.abc import Mapping

import jax
from tensorboardX import SummaryWriter


class MetricWriter:
  """Writes scalars from process 0 only; other processes get a writer that does nothing."""

  def __init__(self, workdir: str):
    self.enabled = jax.process_index() == 0
    self.jsonl_path = os.path.join(workdir, "metrics.jsonl")
    self.tensorboard = SummaryWriter(os.path.join(workdir, "tensorboard")) if self.enabled else None

  def truncate_after(self, step: int) -> None:
    """Drops rows past `step`: after a resume those steps are trained again and re-logged,
    so keeping them would leave duplicates in metrics.jsonl."""
    if not self.enabled or not os.path.exists(self.jsonl_path):
      return
    with open(self.jsonl_path) as f:
      rows = [line for line in f if line.strip() and json.loads(line)["step"] <= step]
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

  def close(self) -> None:
    if self.enabled:
      self.tensorboard.close()
