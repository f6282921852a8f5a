"""One workdir, one writer: a run holds `<workdir>/.lock` while it trains.

Two runs writing one workdir would interleave their checkpoints and `metrics.jsonl` without a word. So a run
takes an exclusive `flock` on the lock file before it builds anything, and a second run is refused at once with
the holder's pid, host and start time (written into the file for that message). The kernel drops a flock when
its process dies, however it dies, so the lock of a killed run is free and the next run takes it over with a
warning. Where the filesystem has no flock, the holder's pid is checked instead; that works on the holder's own
host only, so a lock of another host then counts as held until it is deleted.

Only process 0 of a multi-process run takes the lock. Every process shares the workdir, and one holder per run
refuses a second run (whose own process 0 finds the lock taken); the other processes learn from process 0
whether it got the lock, so every process of a refused run stops with the error instead of waiting for a
process 0 that has gone.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import errno
import fcntl
import json
import logging
import os
import socket
from collections.abc import Iterator

import jax
import numpy as np
from jax.experimental import multihost_utils

from mmjax import errors

LOCK_FILE = ".lock"


@dataclasses.dataclass(frozen=True)
class Holder:
  """Who holds a lock: written into the lock file for the messages of the runs it refuses."""
  pid: int
  host: str
  since: str

  @classmethod
  def this_process(cls) -> Holder:
    return cls(os.getpid(), socket.gethostname(), datetime.datetime.now().astimezone().isoformat(" ", "seconds"))

  def __str__(self) -> str:
    return f"pid {self.pid} on host {self.host}, since {self.since}"

  def alive(self) -> bool:
    """Whether the process may still run: only a process of this host can be seen to have ended."""
    if self.host != socket.gethostname():
      return True
    try:
      os.kill(self.pid, 0)
    except ProcessLookupError:
      return False
    except PermissionError:
      pass  # Another user's process: alive.
    return True


def _read_holder(fd: int) -> Holder | None:
  """The holder written in the lock file, or None (empty: being written, or a run that died before writing)."""
  try:
    return Holder(**json.loads(os.pread(fd, 4096, 0)))
  except (ValueError, TypeError):
    return None


def _same_file(fd: int, path: str) -> bool:
  try:
    on_disk = os.stat(path)
  except FileNotFoundError:
    return False
  opened = os.fstat(fd)
  return (opened.st_dev, opened.st_ino) == (on_disk.st_dev, on_disk.st_ino)


class WorkdirLock:
  """The exclusive lock of one workdir (see the module docstring): `acquire`, then `release`."""

  def __init__(self, workdir: str):
    self.workdir = workdir
    self.path = os.path.join(workdir, LOCK_FILE)
    self._fd: int | None = None

  def acquire(self) -> WorkdirLock:
    """Takes the lock, or raises UserError naming the live run that holds it; a dead holder's lock is taken
    over with a warning. Raises OSError if the lock file cannot be created."""
    while True:
      fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
      try:
        previous = self._lock(fd)
      except BaseException:
        os.close(fd)
        raise
      if _same_file(fd, self.path):
        break
      os.close(fd)  # Its holder released it (removing the file) as this run opened it: lock the new file.
    self._fd = fd
    if previous is not None:
      logging.warning("Took over the lock of %s from a run that is no longer running (%s).", self.workdir, previous)
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(dataclasses.asdict(Holder.this_process())).encode(), 0)
    os.fsync(fd)  # Visible at once to runs on other hosts of a shared filesystem.
    return self

  def _lock(self, fd: int) -> Holder | None:
    """Locks `fd` and returns the holder of a lock left behind by a dead run (None if there was none)."""
    holder = _read_holder(fd)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      raise self._busy(holder, "") from None
    except OSError as e:
      if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
        raise
      if holder is not None and holder.alive():  # No flock on this filesystem: the holder's pid decides.
        raise self._busy(holder, f" (this filesystem has no file locks: if that run has ended, delete "
                                 f"{self.path})") from None
    return holder

  def _busy(self, holder: Holder | None, note: str) -> errors.UserError:
    who = f"({holder})" if holder else "(a run that is starting)"
    stop = f"stop it (kill {holder.pid} on {holder.host})" if holder else "stop it"
    return errors.UserError(f"{self.workdir} is in use by another run {who}{note}; wait for that run to end or "
                            f"{stop}, or train in another --workdir.")

  def release(self) -> None:
    """Removes the lock file, then unlocks: a run waiting on the removed file retries on a new one."""
    if self._fd is not None:
      with contextlib.suppress(FileNotFoundError):
        os.remove(self.path)
      os.close(self._fd)
      self._fd = None


def _unusable(workdir: str, error: OSError) -> errors.UserError:
  """The one-line error for a workdir that cannot be made or written, naming the path to blame."""
  culprit = workdir
  while not os.path.exists(culprit):
    culprit = os.path.dirname(culprit)
  if not os.path.isdir(culprit):
    where = "is a file" if culprit == workdir else f"is under {culprit}, which is a file"
    return errors.UserError(f"--workdir={workdir} {where}, not a directory; choose another --workdir.")
  return errors.UserError(f"--workdir={workdir} cannot be written: {culprit} is not writable ({error.strerror}); "
                          "choose another --workdir or make it writable.")


def _make(workdir: str) -> list[str]:
  """Makes `workdir` and its missing parents; returns the folders it made, outermost first."""
  made, path = [], workdir
  while not os.path.lexists(path):
    made.insert(0, path)
    path = os.path.dirname(path)
  os.makedirs(workdir, exist_ok=True)
  return made


@contextlib.contextmanager
def held(workdir: str) -> Iterator[None]:
  """Makes `workdir` (an absolute path) and holds its lock while the body runs (process 0; see the module
  docstring). Raises UserError, before anything is built, for a workdir in use, a file, or one that cannot be
  written. The folders it made are removed again if the body leaves them empty: a run refused before it
  wrote anything leaves nothing behind, and one refused in an existing workdir changes nothing of it."""
  made, lock, error = [], None, None
  if jax.process_index() == 0:
    try:
      made = _make(workdir)
      lock = WorkdirLock(workdir).acquire()
    except OSError as e:
      error = _unusable(workdir, e)
    except errors.UserError as e:
      error = e
  if jax.process_count() > 1 and multihost_utils.broadcast_one_to_all(np.int32(error is not None)):
    error = error or errors.UserError(f"process 0 could not take {workdir} for this run; see its error.")
  try:
    if error is not None:
      raise error
    yield
  finally:
    if lock is not None:
      lock.release()
    for path in reversed(made):
      try:
        os.rmdir(path)
      except OSError:
        break  # Not empty: the run wrote into it.
