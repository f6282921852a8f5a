"""The workdir: one run holds it (a second is refused, a dead one's lock taken over), a path that cannot be a
workdir is one line, a refused run leaves nothing behind, a resume says what changed, and evaluation only reads.
Everything here fails before anything is built, so no test compiles or trains."""
import errno
import json
import logging
import os
import socket
import subprocess
import sys
import time

import jax.numpy as jnp
import pytest

from mmjax import errors, trainer
from mmjax.trainer import workdir as workdir_lib
from mmjax.trainer import workdir_lock
from mmjax.trainer.checkpoint import Checkpointer
from mmjax.trainer.workdir_lock import LOCK_FILE, Holder, WorkdirLock
from tests.helpers import CORRUPTIONS, REPO, smoke_config


def _dead_pid() -> int:
  process = subprocess.Popen(["true"])
  process.wait()
  return process.pid


def _write_holder(workdir, pid: int, host: str | None = None) -> None:
  holder = {"pid": pid, "host": host or socket.gethostname(), "since": "2001-02-03 04:05:06+00:00"}
  (workdir / LOCK_FILE).write_text(json.dumps(holder))


def test_a_held_workdir_is_refused_naming_the_holder_and_free_again_once_released(tmp_path):
  first = WorkdirLock(str(tmp_path)).acquire()
  holder = Holder(**json.loads((tmp_path / LOCK_FILE).read_text()))
  assert (holder.pid, holder.host) == (os.getpid(), socket.gethostname())
  with pytest.raises(errors.UserError) as refused:
    WorkdirLock(str(tmp_path)).acquire()
  assert str(refused.value) == (
      f"{tmp_path} is in use by another run ({holder}); wait for that run to end or stop it (kill {os.getpid()} on "
      f"{socket.gethostname()}), or train in another --workdir.")
  first.release()
  assert not (tmp_path / LOCK_FILE).exists()
  WorkdirLock(str(tmp_path)).acquire().release()


def test_a_dead_runs_lock_is_taken_over_with_one_warning(tmp_path, caplog):
  pid = _dead_pid()
  _write_holder(tmp_path, pid)  # Left by a killed run: the file stays, its flock went with the process.
  with caplog.at_level(logging.WARNING):
    lock = WorkdirLock(str(tmp_path)).acquire()
  assert [r.getMessage() for r in caplog.records] == [
      f"Took over the lock of {tmp_path} from a run that is no longer running (pid {pid} on host "
      f"{socket.gethostname()}, since 2001-02-03 04:05:06+00:00)."]
  assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
  lock.release()


def test_without_file_locks_the_holders_pid_decides(tmp_path, monkeypatch, caplog):
  def no_flock(fd, operation):
    raise OSError(errno.ENOLCK, "No locks available")
  monkeypatch.setattr(workdir_lock.fcntl, "flock", no_flock)
  for pid, host in [(os.getpid(), None), (1, "another-host")]:  # Alive here; on a host that cannot be checked.
    _write_holder(tmp_path, pid, host)
    with pytest.raises(errors.UserError, match=rf"this filesystem has no file locks: if that run has ended, delete "
                                               rf"{tmp_path / LOCK_FILE}"):
      WorkdirLock(str(tmp_path)).acquire()
  _write_holder(tmp_path, _dead_pid())
  with caplog.at_level(logging.WARNING):
    WorkdirLock(str(tmp_path)).acquire().release()
  assert "Took over the lock" in caplog.text


def _refusal(workdir: str) -> str:
  with pytest.raises(errors.UserError) as refused, workdir_lock.held(workdir):
    pass
  return str(refused.value)


def test_a_path_that_cannot_be_a_workdir_is_one_line(tmp_path):
  a_file = tmp_path / "a_file"
  a_file.write_text("not a workdir")
  assert _refusal(str(a_file)) == f"--workdir={a_file} is a file, not a directory; choose another --workdir."
  assert _refusal(str(a_file / "run")) == (
      f"--workdir={a_file}/run is under {a_file}, which is a file, not a directory; choose another --workdir.")
  assert a_file.read_text() == "not a workdir"


def _denied_under(folder, call):
  def denied(path, *args, **kwargs):
    if os.fspath(path).startswith(os.fspath(folder)):
      raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
    return call(path, *args, **kwargs)
  return denied


def test_an_unwritable_folder_is_one_line(tmp_path, monkeypatch):
  folder = tmp_path / "read_only"
  folder.mkdir(mode=0o555)
  if os.access(folder, os.W_OK):  # Root writes into it anyway: refuse the writes as the kernel would for others.
    monkeypatch.setattr(os, "mkdir", _denied_under(folder, os.mkdir))
    monkeypatch.setattr(os, "open", _denied_under(folder, os.open))
  for workdir in (folder, folder / "run"):
    assert _refusal(str(workdir)) == (f"--workdir={workdir} cannot be written: {folder} is not writable "
                                      "(Permission denied); choose another --workdir or make it writable.")


def _held(path):
  return workdir_lock.held(str(path))


def test_held_removes_the_folders_it_made_if_the_run_leaves_them_empty(tmp_path):
  fresh = tmp_path / "runs" / "new"
  with pytest.raises(errors.ConfigError), _held(fresh):
    assert (fresh / LOCK_FILE).exists()
    raise errors.ConfigError("refused")
  assert os.listdir(tmp_path) == [], "a refused run leaves nothing it made"
  (tmp_path / "kept").mkdir()
  with pytest.raises(errors.ConfigError), _held(tmp_path / "kept"):
    raise errors.ConfigError("refused")
  assert os.listdir(tmp_path / "kept") == [], "a folder that was there stays, and only the lock file goes"
  with _held(fresh):
    (fresh / "config.json").write_text("{}")
  assert os.listdir(fresh) == ["config.json"]


def test_train_on_a_workdir_in_use_is_refused_before_anything_is_built(tmp_path):
  lock = WorkdirLock(str(tmp_path)).acquire()
  try:
    with pytest.raises(errors.UserError, match=rf"^{tmp_path} is in use by another run \(pid {os.getpid()} "):
      trainer.train(smoke_config(str(tmp_path / "no_data")), str(tmp_path))
  finally:
    lock.release()
  assert os.listdir(tmp_path) == [], "the refused run wrote nothing"


def test_the_train_script_on_a_workdir_in_use_exits_at_once_with_one_line(tmp_path):
  lock = WorkdirLock(str(tmp_path)).acquire()
  holder = Holder(**json.loads((tmp_path / LOCK_FILE).read_text()))
  try:
    start = time.time()
    result = subprocess.run([sys.executable, "-m", "experiments.train", "--config=configs/shapes_clip.py:smoke",
                             f"--config.data.data_dir={tmp_path / 'no_data'}", f"--workdir={tmp_path}"],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    took = time.time() - start
  finally:
    lock.release()
  assert result.returncode == 2, result.stderr[-3000:]
  assert result.stderr.splitlines() == [
      f"error: {tmp_path} is in use by another run ({holder}); wait for that run to end or stop it (kill "
      f"{os.getpid()} on {socket.gethostname()}), or train in another --workdir."], result.stderr[-3000:]
  assert took < 30 and os.listdir(tmp_path) == [], "refused before the dataset or anything else was made"


def test_a_run_refused_in_an_existing_workdir_changes_nothing_of_it(tmp_path):
  workdir_lib.write_config(smoke_config("data"), str(tmp_path))
  (tmp_path / "checkpoints" / "12").mkdir(parents=True)
  stored = (tmp_path / "config.json").read_text()
  with pytest.raises(errors.ConfigError, match=r"config.eval_batch_size=60 must be a positive multiple"):
    trainer.train(smoke_config("data", eval_batch_size=60), str(tmp_path))  # A resume-safe key, a bad value.
  assert (tmp_path / "config.json").read_text() == stored
  assert sorted(os.listdir(tmp_path)) == ["checkpoints", "config.json"]
  assert os.listdir(tmp_path / "checkpoints") == ["12"]


def test_a_resume_names_the_changed_resume_safe_keys_and_an_ignored_init_from_once(tmp_path, caplog):
  workdir = str(tmp_path)
  workdir_lib.write_config(smoke_config("data"), workdir)
  with caplog.at_level(logging.WARNING):
    workdir_lib.check_resumable(smoke_config("data", total_steps=70), workdir, has_checkpoint=True)
    assert [r.getMessage() for r in caplog.records] == [
        f"Resuming {workdir} with changed resume-safe keys: total_steps: 60 → 70."]
    caplog.clear()
    workdir_lib.check_resumable(smoke_config("data", init_from="/runs/clip"), workdir, has_checkpoint=True)
    assert [r.getMessage() for r in caplog.records] == [
        f'Resuming {workdir} with changed resume-safe keys: init_from: "" → "/runs/clip".',
        f"config.init_from='/runs/clip' is ignored: {workdir} holds checkpoints, so the run resumes from its own "
        "newest one (fine-tune in a new --workdir to start from init_from)."]
    caplog.clear()
    workdir_lib.write_config(smoke_config("data", init_from="/runs/clip"), workdir)
    workdir_lib.check_resumable(smoke_config("data", init_from="/runs/clip"), workdir, has_checkpoint=True)
    workdir_lib.check_resumable(smoke_config("data", total_steps=70), workdir, has_checkpoint=False)
    assert caplog.records == [], "resuming a fine-tuned run as it was, or starting afresh, changes nothing"


def test_evaluating_a_workdir_without_a_checkpoint_says_so_and_writes_nothing(tmp_path):
  workdir_lib.write_config(smoke_config("data"), str(tmp_path))
  for workdir in (tmp_path, tmp_path / "missing"):
    with pytest.raises(errors.CheckpointError, match=rf"^no checkpoint to evaluate in {workdir}; train first"):
      trainer.evaluate(smoke_config("data"), str(workdir))
  assert os.listdir(tmp_path) == ["config.json"]


def test_evaluation_reads_past_a_bad_step_without_moving_it(tmp_path):
  """Evaluation takes no lock: it sees finished steps only (orbax renames a step into place when it is complete)
  and, reading a workdir a run may be writing, leaves a bad step where it is for that run to deal with."""
  directory = tmp_path / "checkpoints"
  checkpointer = Checkpointer(str(directory), max_to_keep=3)
  for step in (1, 2):
    checkpointer.save(step, {"w": jnp.full((4,), float(step))}, {})
  checkpointer.close()
  CORRUPTIONS["empty step directory"](directory / "2")
  reader = Checkpointer(str(directory), max_to_keep=None, read_only=True)
  state, _, step = reader.restore_latest(None, host_state=False)
  reader.close()
  assert step == 1 and state["w"].tolist() == [1.0] * 4
  assert sorted(os.listdir(tmp_path)) == ["checkpoints"] and sorted(os.listdir(directory)) == ["1", "2"]
  Checkpointer(str(tmp_path / "none"), max_to_keep=None, read_only=True).close()
  assert not (tmp_path / "none").exists()
