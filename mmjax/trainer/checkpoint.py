"""Orbax checkpoints of the train state and each process's host state, with fallback past bad steps."""
from collections.abc import Iterator, Mapping
import contextlib
import dataclasses
import errno
import glob
import json
import logging
import os
import shutil
import sys
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
  with _orbax_logs_from(logging.ERROR):  # Orbax warns that it overrides its own handler, which is the point.
    ocp.type_handlers.register_type_handler(
        jax.Array, ocp.type_handlers.ArrayHandler(min_slice_bytes_for_replica_parallel=1 << 20), override=True)


@contextlib.contextmanager
def _orbax_logs_from(level: int) -> Iterator[None]:
  """Orbax logs through absl's logger: within the block, only records of `level` and above (never fewer than
  before; NOTSET changes nothing)."""
  absl_logger = logging.getLogger("absl")
  previous = absl_logger.level
  absl_logger.setLevel(max(level, previous))
  try:
    yield
  finally:
    absl_logger.setLevel(previous)


def _orbax_quiet() -> contextlib.AbstractContextManager:
  """No orbax logs in the block unless INFO is logged (--verbosity=0): opening a workdir with a bad step and
  restoring it, orbax reports the step's missing or unparsable files at length (a zero-filled metadata file
  byte by byte); the Checkpointer says the same on one line."""
  return _orbax_logs_from(logging.NOTSET if logging.getLogger().isEnabledFor(logging.INFO) else logging.CRITICAL)


_DISK_FULL = tuple(os.strerror(code) for code in (errno.ENOSPC, errno.EDQUOT))


def _is_disk_full(error: BaseException | None) -> bool:
  """Whether `error`, or one it was raised from, is a full disk or quota: an OSError of Python's own writes, or a
  TensorStore error (orbax's array writes; a ValueError "RESOURCE_EXHAUSTED") carrying the OS's message."""
  while error is not None:
    if any(text in str(error) for text in _DISK_FULL) or getattr(error, "errno", None) in (errno.ENOSPC,
                                                                                             errno.EDQUOT):
      return True
    error = error.__cause__ or error.__context__
  return False


def _quiet_failed_operations() -> None:
  """An orbax save that fails (a full disk) or a restore that does (a damaged step) can leave thousands of lines on
  stderr that repeat what the Checkpointer reports on one line: each writer thread logs the disk error with its
  traceback; orbax gathers its array reads and writes as coroutines and, at the first error, drops the others, whose
  own errors (a TensorStore spec each) are printed when they are collected, as unraisable or by asyncio ("exception
  was never retrieved"); and the TensorStore operations behind them complete later into orbax's closed event loop,
  each an unraisable "Event loop is closed". The disk errors are dropped from absl's log (a full disk is always
  raised from save, wait or close); asyncio's unretrieved errors from its log (the event loops of an mmjax process
  are orbax's: its own and the grain checkpoint handler's it runs); the rest from the unraisable hook, which passes
  every other error."""
  logging.getLogger("absl").addFilter(
      lambda record: not (_is_disk_full(record.exc_info[1] if record.exc_info else None)
                          or any(text in record.getMessage() for text in _DISK_FULL)))
  logging.getLogger("asyncio").addFilter(lambda record: "exception was never retrieved" not in record.getMessage())
  report = sys.unraisablehook
  orbax_dir = os.path.dirname(ocp.__file__)

  def unraisablehook(unraisable) -> None:
    error, code = unraisable.exc_value, getattr(unraisable.object, "cr_code", None)
    dropped_coroutine = code is not None and code.co_filename.startswith(orbax_dir)
    closed_loop = isinstance(error, RuntimeError) and str(error) == "Event loop is closed"
    if not (dropped_coroutine or closed_loop):
      report(unraisable)

  sys.unraisablehook = unraisablehook


_register_array_handler()
_quiet_failed_operations()

def has_checkpoint(directory: str) -> bool:
  """Whether `directory` holds a finished checkpoint step (orbax names steps by their number)."""
  return os.path.isdir(directory) and any(name.isdigit() for name in os.listdir(directory))


@dataclasses.dataclass
class _HostState:
  """Adapts a JSON-serialisable dict (the data loader's position, metrics not yet logged) to
  the iterator protocol of grain's orbax handler, which writes it as `<step>/data/process_<i>-of-<n>.json`. The
  dict is a snapshot taken when the checkpoint is requested, so an async save cannot record a
  later position."""
  state: dict[str, Any]

  def get_state(self) -> bytes:
    return json.dumps(self.state).encode()


class Checkpointer:
  """Saves {state, host state} every few steps; never deletes a good step before a newer one is
  complete (orbax removes old steps only after finalizing the new one)."""

  def __init__(self, directory: str, *, max_to_keep: int, read_only: bool = False):
    """`read_only` for readers of a workdir (evaluation, fine-tuning from another run), which a run may be
    writing: it creates no directory and moves no bad step aside (the run that owns it does that)."""
    self.read_only = read_only
    self.saving: int | None = None  # The step of the newest save started.
    # The handlers named up front let item_metadata read a step's array shapes before any restore.
    with _orbax_quiet():
      self.manager = ocp.CheckpointManager(
          directory,
          options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=not read_only,
                                               enable_async_checkpointing=True),
          item_handlers={"state": ocp.StandardCheckpointHandler(), "data": grain.checkpoint.CheckpointHandler()})

  def save(self, step: int, state, host_state: Mapping[str, Any]) -> None:
    """Starts an async save of the (sharded) `state` and this process's JSON `host_state`."""
    self.wait()  # orbax's save waits for the previous one first anyway; an error of that one is its step's.
    self.saving = step
    with self._disk_full_reported():
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
    arrays. Any of them may run with another number of processes than the run that saved them.

    A step whose arrays differ in shape or name from `abstract_state` raises a CheckpointError naming the first
    that differs, stored and configured: the config changed (e.g. an evaluate --config.model override); orbax
    would restore up to that array and fail without naming it.

    orbax still lists a truncated, zero-filled or empty newest step, and its restore raises.
    Such steps are skipped; once an older step restores, each gets one warning naming its path and
    the reason (the traceback is logged at INFO: --verbosity=0), and is moved aside to
    `<directory>.corrupt/` (kept, not deleted): left in place, they would block saving their step again and,
    being the "newest", make `max_to_keep` delete the good checkpoints written after the fallback. If no step
    restores, nothing is moved (the cause is then more likely a changed config than corruption). A `read_only`
    reader moves nothing either.
    """
    failures = []
    with _orbax_quiet():
      for step in sorted(self.manager.all_steps(), reverse=True):
        if abstract_state is not None:
          self._check_shapes(step, abstract_state)
        try:
          restored = self.manager.restore(step, args=ocp.args.Composite(
              state=ocp.args.StandardRestore(abstract_state)))
          host = self._host_state(step) if host_state else None
        except Exception as e:  # noqa: BLE001 — any failure means this step is unusable.
          logging.info("Checkpoint %s cannot be restored.", self._step_path(step), exc_info=True)
          failures.append((step, _one_line(e)))
          continue
        self._set_aside(failures, step)
        return restored.state, host, step
    if failures:
      step, reason = failures[0]
      raise errors.CheckpointError(
          f"None of the {len(failures)} checkpoints in {self.manager.directory} restores with this "
          f"config; the newest ({step}) failed with {reason}. If the model, optimizer or data "
          "config changed, train in a new --workdir (or move the old checkpoints away).")
    return None

  def _step_path(self, step: int) -> str:
    return os.path.join(os.fspath(self.manager.directory), str(step))

  def _host_state(self, step: int) -> dict[str, Any]:
    """This process's host state of `step`, as grain's handler wrote it; written by another number of processes,
    process 0's: nothing in it is this process's own (the loader position is global and each loader translates it,
    mmjax.data.loader_state; the unlogged metrics are every process's)."""
    directory = os.path.join(self._step_path(step), "data")
    path = os.path.join(directory, f"process_{jax.process_index()}-of-{jax.process_count()}.json")
    if not os.path.exists(path):
      path = next(iter(sorted(glob.glob(os.path.join(directory, "process_0-of-*.json")))), path)
    with open(path) as f:
      return json.load(f)

  def _check_shapes(self, step: int, abstract_state) -> None:
    """A CheckpointError if the arrays of `step` (from its metadata, read without the arrays) differ in shape
    or name from `abstract_state`. Metadata that cannot be read is left to the restore: a damaged step."""
    try:
      stored = _shapes(self.manager.item_metadata(step)["state"])
    except Exception:  # noqa: BLE001 — any failure: the restore says what is wrong with the step.
      return
    configured = _shapes(abstract_state)
    differences = [f"{name} is {stored.get(name, 'not stored')} in the checkpoint but "
                   f"{configured.get(name, 'not in the model')} with this config"
                   for name in sorted(set(stored) | set(configured)) if stored.get(name) != configured.get(name)]
    if stored and differences:
      differences.sort(key=lambda text: not text.startswith("params/"))  # Optimizer moments repeat a param's.
      more = f" (and {len(differences) - 1} more arrays differ)" if len(differences) > 1 else ""
      raise errors.CheckpointError(
          f"Checkpoint {self._step_path(step)} does not fit this config: {differences[0]}{more}. The config "
          "differs from the one the checkpoint was trained with (its workdir's config.json): drop the changed "
          "--config overrides, or train the new config in a new --workdir.")

  def _set_aside(self, failures: list[tuple[int, str]], restored_step: int) -> None:
    """One warning per unrestorable step of `failures` (step, reason), newer than the `restored_step`; unless
    read-only, moves each to `<directory>.corrupt/<step>[.N]`, then rereads the step list."""
    if self.read_only:
      for step, reason in failures:
        logging.warning("Checkpoint %s cannot be restored (%s); using step %d.", self._step_path(step), reason,
                        restored_step)
      return
    if not failures:
      return
    if jax.process_index() == 0:
      corrupt_dir = os.fspath(self.manager.directory).rstrip("/") + ".corrupt"
      os.makedirs(corrupt_dir, exist_ok=True)
      for step, reason in failures:
        target = os.path.join(corrupt_dir, str(step))
        suffix = 0
        while os.path.exists(target):
          suffix += 1
          target = os.path.join(corrupt_dir, f"{step}.{suffix}")
        os.replace(self._step_path(step), target)
        logging.warning("Checkpoint %s cannot be restored (%s); moved it to %s and restored step %d.",
                        self._step_path(step), reason, target, restored_step)
    multihost_utils.sync_global_devices("mmjax_checkpoint_quarantine")
    self.manager.reload()

  @contextlib.contextmanager
  def _disk_full_reported(self) -> Iterator[None]:
    """A full disk as one CheckpointError: orbax saves asynchronously, so the error of a save surfaces at the
    next save, wait or close, from a writer thread. The last good step is kept (orbax deletes old steps only
    after a new one is finalized); the message names it, the full path and how to resume."""
    try:
      yield
    except Exception as e:
      if not _is_disk_full(e):
        raise
      directory = os.fspath(self.manager.directory)
      try:
        free = f"{shutil.disk_usage(directory).free / 2**20:.1f} MiB free"
      except OSError:
        free = "free space unknown"
      good = [int(name) for name in os.listdir(directory) if name.isdigit()]
      resume = (f"the last good checkpoint, step {max(good)}, is kept. Free space there, then rerun the same "
                f"command to resume from step {max(good)}" if good else
                "no step was saved yet. Free space there, then rerun the same command to start again")
      raise errors.CheckpointError(f"No space left on the device of {directory} ({free}) while saving checkpoint "
                                   f"step {self.saving}; {resume}.") from e

  def wait(self) -> None:
    with self._disk_full_reported():
      self.manager.wait_until_finished()

  def close(self) -> None:
    with self._disk_full_reported():
      self.manager.close()


def _shapes(tree) -> dict[str, tuple[int, ...]]:
  """{"params/text_encoder/embed/embedding": shape} of every array of `tree`: a state, its abstract state (shape
  and dtype structs) or orbax's metadata of it (dicts and lists where the state has dataclasses and tuples)."""
  def name(key) -> str:
    return str(next((getattr(key, field) for field in ("key", "name", "idx") if hasattr(key, field)), key))
  return {"/".join(name(key) for key in path): tuple(getattr(leaf, "shape", ()))
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _one_line(error: BaseException) -> str:
  """`Type: first line of the message` (at most 300 characters) of the error `error` was raised from, if any:
  orbax raises "Encountered error while reading array index" followed by a TensorStore spec, from TensorStore's
  error that names the array, the file and what is wrong with it."""
  while error.__cause__ is not None:
    error = error.__cause__
  return f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0][:300]}"


def restore_newest(directory: str) -> tuple[Any, int]:
  """(state as saved, step) of the newest good step of another run's checkpoint `directory` (arrays only,
  restored as saved: e.g. a pretrained run's params to fine-tune from)."""
  checkpointer = Checkpointer(directory, max_to_keep=None, read_only=True)
  try:
    state, _, step = checkpointer.restore_latest(None, host_state=False)
  finally:
    checkpointer.close()
  return state, step
