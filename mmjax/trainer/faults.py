"""The one fault-injection hook, for the crash tests: MMJAX_KILL_AT=<point>:<step>[:<signal>].

The loop calls `maybe_kill(point, step)` at a few points: "step" (a step dispatched, its result not yet
fetched), "save" (a checkpoint being written in the background) and "eval" (between evaluators). When the
variable names that point and step, the process sends itself SIGKILL (or the named signal). Unset, as in
every real run, a call costs one environment lookup.
"""
import os
import signal

KILL_AT_ENV = "MMJAX_KILL_AT"
POINTS = ("step", "save", "eval")


def maybe_kill(point: str, step: int) -> None:
  fields = os.environ.get(KILL_AT_ENV, "").split(":")
  if fields[:2] == [point, str(step)]:
    os.kill(os.getpid(), signal.Signals[fields[2] if len(fields) > 2 else "SIGKILL"])
