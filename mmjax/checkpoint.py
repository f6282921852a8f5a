"""Orbax checkpoints of the train state and the data position, with fallback past bad steps."""
from collections.abc import Mapping
import dataclasses
import json
import logging
from typing import Any

import grain
import orbax.checkpoint as ocp


@dataclasses.dataclass
class _DataPosition:
  """Adapts a data-loader state dict to the iterator protocol of grain's orbax handler,
  which writes one JSON file per process. The state is a snapshot taken when the
  checkpoint is requested, so an async save cannot record a later position."""
  state: dict[str, Any] | None = None

  def get_state(self) -> bytes:
    return json.dumps(self.state).encode()

  def set_state(self, state: bytes) -> None:
    self.state = json.loads(state)

  def start_prefetch(self) -> None:
    pass


class Checkpointer:
  """Saves {state, data} every few steps; never deletes a good step before a newer one is complete."""

  def __init__(self, directory: str, *, max_to_keep: int):
    self.manager = ocp.CheckpointManager(
        directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                             enable_async_checkpointing=True))

  def save(self, step: int, state, data_state: Mapping[str, Any]) -> None:
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=grain.checkpoint.CheckpointSave(_DataPosition(dict(data_state)))), force=True)

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def restore_latest(self, abstract_state) -> tuple[Any, dict[str, Any], int] | None:
    """(state, data_state, step) from the newest step that restores, or None if there is none.

    orbax still lists a truncated or corrupt newest step and its restore raises: warn with the
    path and reason, then fall back to the next older step.
    """
    for step in sorted(self.manager.all_steps(), reverse=True):
      try:
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state),
            data=grain.checkpoint.CheckpointRestore(_DataPosition())))
      except Exception as e:  # noqa: BLE001 — any failure means this step is unusable.
        logging.warning("Checkpoint step %d in %s cannot be restored (%s: %s); trying an older one.",
                        step, self.manager.directory, type(e).__name__, e)
        continue
      return restored.state, restored.data.state, step
    return None

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.close()
