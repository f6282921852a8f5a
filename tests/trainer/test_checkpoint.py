"""Checkpoint corruption: every bad newest step is skipped with a warning, moved aside, and
the newest good one restored; nothing good is deleted afterwards. A changed shape and a full disk are one error."""
import errno
import logging
import os

import grain
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmjax import errors
from mmjax.trainer.checkpoint import Checkpointer, has_checkpoint
from tests.helpers import CORRUPTIONS


def _state(value: float) -> dict:
  return {"w": jnp.full((64, 64), value, jnp.float32), "step": jnp.asarray(int(value), jnp.int32)}


def _abstract(state: dict) -> dict:
  sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), state)


def _save_steps(directory: str, steps, max_to_keep: int = 5) -> None:
  checkpointer = Checkpointer(directory, max_to_keep=max_to_keep)
  for step in steps:
    checkpointer.save(step, _state(step), {"position": step})
  checkpointer.close()


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_bad_newest_step_falls_back_warns_and_is_moved_aside(tmp_path, caplog, corruption):
  directory = tmp_path / "checkpoints"
  _save_steps(str(directory), [1, 2, 3])
  CORRUPTIONS[corruption](directory / "3")

  checkpointer = Checkpointer(str(directory), max_to_keep=2)
  with caplog.at_level(logging.WARNING):
    state, data_state, step = checkpointer.restore_latest(_abstract(_state(0)))
  assert step == 2 and data_state == {"position": 2}
  np.testing.assert_array_equal(state["w"], np.full((64, 64), 2.0))
  # One line for the bad step (orbax's own reports of it, tracebacks among them, show only at INFO).
  [warning] = [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
  assert warning.startswith(f"Checkpoint {directory}/3 cannot be restored (") and "\n" not in warning, warning
  assert warning.endswith(f"moved it to {tmp_path}/checkpoints.corrupt/3 and restored step 2."), warning
  assert (tmp_path / "checkpoints.corrupt" / "3").is_dir(), "the bad step is kept, not deleted"
  assert checkpointer.manager.all_steps() == [1, 2]

  # Training goes on from step 2 and saves 3 and 4 again; max_to_keep=2 must keep those two
  # (a bad step 3 left in place would have blocked the save of 3).
  for new_step in (3, 4):
    checkpointer.save(new_step, _state(new_step + 10), {"position": new_step})
  checkpointer.close()
  checkpointer = Checkpointer(str(directory), max_to_keep=2)
  state, _, step = checkpointer.restore_latest(_abstract(_state(0)))
  assert step == 4 and checkpointer.manager.all_steps() == [3, 4]
  np.testing.assert_array_equal(state["w"], np.full((64, 64), 14.0))
  checkpointer.close()


def test_stray_tmp_dir_of_an_interrupted_save_is_ignored(tmp_path):
  directory = tmp_path / "checkpoints"
  _save_steps(str(directory), [1, 2])
  stray = directory / "3.orbax-checkpoint-tmp-1732000000000000"
  (stray / "state").mkdir(parents=True)
  (stray / "state" / "junk").write_bytes(b"partial")

  checkpointer = Checkpointer(str(directory), max_to_keep=2)
  _, _, step = checkpointer.restore_latest(_abstract(_state(0)))
  assert step == 2
  checkpointer.save(3, _state(3), {"position": 3})
  checkpointer.close()
  checkpointer = Checkpointer(str(directory), max_to_keep=2)
  state, _, step = checkpointer.restore_latest(_abstract(_state(0)))
  assert step == 3 and int(state["step"]) == 3
  checkpointer.close()


def test_the_traceback_of_a_bad_step_is_logged_at_info(tmp_path, caplog):
  directory = tmp_path / "checkpoints"
  _save_steps(str(directory), [1, 2])
  CORRUPTIONS["zero-filled metadata"](directory / "2")
  checkpointer = Checkpointer(str(directory), max_to_keep=2)
  with caplog.at_level(logging.INFO):
    assert checkpointer.restore_latest(_abstract(_state(0)))[2] == 1
  checkpointer.close()
  assert any(record.exc_info and f"{directory}/2" in record.getMessage() for record in caplog.records)


def test_a_changed_shape_names_the_array_stored_and_configured_and_moves_nothing(tmp_path):
  """A changed config fails every step; that is not corruption. The first parameter that differs is named."""
  directory = tmp_path / "checkpoints"
  _save_steps(str(directory), [1, 2])
  checkpointer = Checkpointer(str(directory), max_to_keep=2)
  for other, message in (
      ({"w": jnp.zeros((32, 64)), "step": jnp.int32(0)}, r"w is \(64, 64\) in the checkpoint but \(32, 64\) with"),
      ({"w": jnp.zeros((64, 64)), "step": jnp.int32(0), "b": jnp.zeros(3)}, r"b is not stored in the checkpoint "
       r"but \(3,\) with this config"),
      ({"w": jnp.zeros((64, 64))}, r"step is \(\) in the checkpoint but not in the model with this config")):
    with pytest.raises(errors.CheckpointError, match=rf"^Checkpoint {directory}/2 does not fit this config: {message}"):
      checkpointer.restore_latest(_abstract(other))
  checkpointer.close()
  assert sorted(os.listdir(directory)) == ["1", "2"] and not (tmp_path / "checkpoints.corrupt").exists()


def test_no_restorable_step_is_an_error_and_moves_nothing(tmp_path):
  directory = tmp_path / "checkpoints"
  _save_steps(str(directory), [1, 2])
  for step in ("1", "2"):
    CORRUPTIONS["zero-filled metadata"](directory / step)
  checkpointer = Checkpointer(str(directory), max_to_keep=2)
  with pytest.raises(errors.CheckpointError, match=r"None of the 2 checkpoints .* restores with this config"):
    checkpointer.restore_latest(_abstract(_state(0)))
  checkpointer.close()
  assert sorted(os.listdir(directory)) == ["1", "2"] and not (tmp_path / "checkpoints.corrupt").exists()


def test_a_full_disk_is_one_error_naming_the_path_and_the_last_good_step_which_is_kept(tmp_path, monkeypatch):
  """A write of step 2 fails with ENOSPC (the host state's, standing in for any: a full tmpfs fails TensorStore's
  array writes with the same OS message, at the same places)."""
  directory = tmp_path / "checkpoints"
  checkpointer = Checkpointer(str(directory), max_to_keep=1)
  checkpointer.save(1, _state(1), {"position": 1})
  checkpointer.wait()

  def full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(directory / "2"))

  monkeypatch.setattr(grain.checkpoint.CheckpointHandler, "save", full_disk)
  with pytest.raises(errors.CheckpointError, match=(
      rf"^No space left on the device of {directory} \([\d.]+ MiB free\) while saving checkpoint step 2; the last "
      r"good checkpoint, step 1, is kept. Free space there, then rerun the same command to resume from step 1\.$")):
    checkpointer.save(2, _state(2), {"position": 2})
    checkpointer.wait()
  monkeypatch.undo()
  checkpointer = Checkpointer(str(directory), max_to_keep=1)
  state, _, step = checkpointer.restore_latest(_abstract(_state(0)))
  assert step == 1 and int(state["step"]) == 1
  checkpointer.close()


def test_has_checkpoint(tmp_path):
  assert not has_checkpoint(str(tmp_path / "missing"))
  (tmp_path / "2.orbax-checkpoint-tmp-5").mkdir()
  assert not has_checkpoint(str(tmp_path))
  _save_steps(str(tmp_path), [7])
  assert has_checkpoint(str(tmp_path))
