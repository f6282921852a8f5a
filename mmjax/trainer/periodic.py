"""When the loop logs, evaluates, checkpoints and agrees to stop: the periodic work, in one testable place."""
from __future__ import annotations

import dataclasses
import logging
import signal
import time
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import PartitionSpec as P

from mmjax import errors

INTERVAL_KEYS = ("total_steps", "log_every_steps", "checkpoint_every_steps", "keep_checkpoints")


def check_intervals(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError naming every loop setting (steps, intervals) that is not a positive int (an eval's
  `every_steps` may be 0: at the end only)."""
  def bad(value, least: int) -> bool:
    return isinstance(value, bool) or not isinstance(value, int) or value < least

  problems = [f"config.{name}={config[name]!r}" for name in INTERVAL_KEYS if bad(config[name], 1)]
  if problems:
    raise errors.ConfigError(f"{', '.join(problems)}: each must be a positive integer.")
  problems = [f"config.evals.{name}.every_steps={c.every_steps!r}" for name, c in config.evals.items()
              if bad(c.every_steps, 0)]
  if problems:
    raise errors.ConfigError(f"{', '.join(problems)}: each must be an integer ≥ 0 (0: evaluate at the end only).")


@dataclasses.dataclass(frozen=True)
class Due:
  """What the loop does after a step."""
  log: bool
  evals: tuple[str, ...]  # Evaluators due mid-run (the final step runs every evaluator after the loop).
  checkpoint: bool  # Also after any step at which the run agrees to stop (StopRequest.agreed).


@dataclasses.dataclass(frozen=True)
class Schedule:
  """The intervals of `config`: which work is due after which step."""
  total_steps: int
  log_every: int
  checkpoint_every: int
  eval_every: Mapping[str, int]

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict) -> Schedule:
    check_intervals(config)
    return cls(config.total_steps, config.log_every_steps, config.checkpoint_every_steps,
               {name: c.every_steps for name, c in config.evals.items()})

  def due(self, step: int) -> Due:
    """After `step` (the count of finished steps). The last step logs and checkpoints; its evals run after
    the loop, once the final checkpoint is safe."""
    last = step == self.total_steps
    return Due(log=step % self.log_every == 0 or last,
               evals=tuple(n for n, every in self.eval_every.items() if every and step % every == 0 and not last),
               checkpoint=step % self.checkpoint_every == 0 or last)


class _AnyProcess:
  """any() over processes of one bool each, computed on the devices: dispatched, not awaited, so that the caller
  reads it a step later, when it is ready. The two inputs a process can give are placed once."""

  def __init__(self):
    devices = np.array(jax.devices()).reshape(jax.process_count(), jax.local_device_count())
    mesh = jax.sharding.Mesh(devices, ("processes", "local_devices"))
    by_process = jax.sharding.NamedSharding(mesh, P("processes"))
    self._flags = {flag: jax.make_array_from_process_local_data(by_process, np.array([flag]), (jax.process_count(),))
                   for flag in (False, True)}
    self._any = jax.jit(jnp.any, out_shardings=jax.sharding.NamedSharding(mesh, P()))

  def __call__(self, flag: bool) -> jax.Array:
    return self._any(self._flags[flag])


class StopRequest:
  """SIGTERM (preemption) or Ctrl-C asks the loop to save and stop after the next step at the latest.
  A second Ctrl-C interrupts at once."""

  def __init__(self):
    self.requested = False
    self.requested_at: float | None = None
    self._any_process = _AnyProcess() if jax.process_count() > 1 else None
    self._previous_step_agreement: jax.Array | None = None

  def __enter__(self) -> StopRequest:
    self.previous = {s: signal.signal(s, self._handle) for s in (signal.SIGTERM, signal.SIGINT)}
    return self

  def _handle(self, signum, frame):
    del frame
    logging.warning("Received %s: saving a checkpoint and stopping.", signal.Signals(signum).name)
    self.requested, self.requested_at = True, time.time()
    signal.signal(signal.SIGINT, signal.default_int_handler)

  def __exit__(self, *exc):
    for s, handler in self.previous.items():
      signal.signal(s, handler)

  def agreed(self) -> bool:
    """Whether to stop after the step just dispatched; called once after every step.

    One process stops after the step during which the signal came. Several must stop at the same step, or the
    others wait forever in the next step's collectives. Each step, every process adds its request to an any()
    over processes, run on the devices after the step just dispatched, and reads the previous step's, queued right
    behind that step, whose metrics the loop has already waited for: so a request on any process stops every
    process one step later than it would stop one, and agreeing does not wait for the step in flight."""
    if self._any_process is None:
      return self.requested
    previous, self._previous_step_agreement = self._previous_step_agreement, self._any_process(self.requested)
    return previous is not None and bool(previous)
