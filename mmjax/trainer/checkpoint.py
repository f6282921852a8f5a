"""Orbax checkpoints of the train state and each process's host state, with fallback past bad steps."""
from collections.abc import Mapping
import dataclasses
import json
import logging
import os
from typing import Any

import grain
import jax
from jax.experimental import multihost_utils
import orbax.checkpoint as ocp

from mmjax import errors

# Orbax saves a replicated array replica-parallel: each replica writes a slice. That pays off for large arrays
# on many hosts; for a small one, cutting the slices costs one compiled program per parameter shape (for the
# smoke two-tower, 88 of them, ~3 s at every process start) to speed up a transfer of microseconds. Below
# 1 MiB per slice, one replica writes the whole array.
def _register_array_handler() -> None:
  absl_logger = logging.getLogger("absl")
  level = absl_logger.level
  absl_logger.setLevel(logging.ERROR)  # Orbax warns that it overrides its own handler, which is the point.
  try:
    ocp.type_handlers.register_type_handler(
        jax.Array, ocp.type_handlers.ArrayHandler(min_slice_bytes_for_replica_parallel=1 << 20), override=True)
  finally:
    absl_logger.setLevel(level)


_register_array_handler()

def has_checkpoint(directory: str) -> bool:
  """Whether `directory` holds a finished checkpoint step (orbax names steps by their number)."""
  return os.path.isdir(directory) and any(name.isdigit() for name in os.listdir(directory))


@dataclasses.dataclass
class _HostState:
  """Adapts a JSON-serialisable dict (the data loader's position, metrics not yet logged) to
  the iterator protocol of grain's orbax handler, which writes one JSON file per process. The
  dict is a snapshot taken when the checkpoint is requested, so an async save cannot record a
  later position."""
  state: dict[str, Any] | None = None

  def get_state(self) -> bytes:
    return json.dumps(self.state).encode()

  def set_state(self, state: bytes) -> None:
    self.state = json.loads(state)

  def start_prefetch(self) -> None:
    pass


class Checkpointer:
  """Saves {state, host state} every few steps; never deletes a good step before a newer one is
  complete (orbax removes old steps only after finalizing the new one)."""

  def __init__(self, directory: str, *, max_to_keep: int):
    self.manager = ocp.CheckpointManager(
        directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                             enable_async_checkpointing=True))

  def save(self, step: int, state, host_state: Mapping[str, Any]) -> None:
    """Starts an async save of the (sharded) `state` and this process's JSON `host_state`."""
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=grain.checkpoint.CheckpointSave(_HostState(json.loads(json.dumps(host_state))))), force=True)

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def restore_latest(self, abstract_state,
                     host_state: bool = True) -> tuple[Any, dict[str, Any] | None, int] | None:
    """(state, host_state, step) from the newest step that restores, or None if there is none.

    `abstract_state` (shapes, dtypes and shardings) may be None to restore the arrays as
    saved, e.g. another run's params to fine-tune from. `host_state=False` skips the
    per-process host state (returned as None): evaluation and fine-tuning need only the
    arrays, and may run with another number of processes than the run that saved them.

    orbax still lists a truncated, zero-filled or empty newest step, and its restore raises.
    Such steps are skipped with a warning naming the path and the reason. Once an older step
    restores, the bad newer ones are moved aside to `<directory>.corrupt/` (kept, not deleted):
    left in place, they would block saving their step again and, being the "newest", make
    `max_to_keep` delete the good checkpoints written after the fallback. If no step restores,
    nothing is moved (the cause is then more likely a changed config than corruption).
    """
    failures = []
    for step in sorted(self.manager.all_steps(), reverse=True):
      try:
        items = {"state": ocp.args.StandardRestore(abstract_state)}
        if host_state:
          items["data"] = grain.checkpoint.CheckpointRestore(_HostState())
        restored = self.manager.restore(step, args=ocp.args.Composite(**items))
      except Exception as e:  # noqa: BLE001 — any failure means this step is unusable.
        reason = f"{type(e).__name__}: {str(e)[:500]}"
        logging.warning("Checkpoint %s cannot be restored (%s); trying an older one.",
                        self._step_path(step), reason)
        failures.append((step, reason))
        continue
      if failures:
        self._quarantine([step for step, _ in failures])
      return restored.state, restored.data.state if host_state else None, step
    if failures:
      step, reason = failures[0]
      raise errors.CheckpointError(
          f"None of the {len(failures)} checkpoints in {self.manager.directory} restores with this "
          f"config; the newest ({step}) failed with {reason}. If the model, optimizer or data "
          "config changed, train in a new --workdir (or move the old checkpoints away).")
    return None

  def _step_path(self, step: int) -> str:
    return os.path.join(os.fspath(self.manager.directory), str(step))

  def _quarantine(self, steps: list[int]) -> None:
    """Moves unrestorable steps to `<directory>.corrupt/<step>[.N]`, then rereads the step list."""
    if jax.process_index() == 0:
      corrupt_dir = os.fspath(self.manager.directory).rstrip("/") + ".corrupt"
      os.makedirs(corrupt_dir, exist_ok=True)
      for step in steps:
        target = os.path.join(corrupt_dir, str(step))
        suffix = 0
        while os.path.exists(target):
          suffix += 1
          target = os.path.join(corrupt_dir, f"{step}.{suffix}")
        os.replace(self._step_path(step), target)
        logging.warning("Moved unrestorable checkpoint step %d to %s.", step, target)
    multihost_utils.sync_global_devices("mmjax_checkpoint_quarantine")
    self.manager.reload()

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.close()


def restore_newest(directory: str) -> tuple[Any, int]:
  """(state as saved, step) of the newest good step of another run's checkpoint `directory` (arrays only,
  restored as saved: e.g. a pretrained run's params to fine-tune from)."""
  checkpointer = Checkpointer(directory, max_to_keep=None)
  try:
    state, _, step = checkpointer.restore_latest(None, host_state=False)
  finally:
    checkpointer.close()
  return state, step
