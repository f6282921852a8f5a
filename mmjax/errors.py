"""Errors a user can fix, and how scripts report them.

Each message names what is wrong and what to do. The scripts print it on one
line and exit non-zero, without a traceback: a traceback is for bugs in mmjax.
"""
from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

from absl import flags


class UserError(Exception):
  """Raised for anything the user can fix: a config, an input, a workdir. Exit code 2."""
  exit_code = 2


class ConfigError(UserError, ValueError):
  """A config key or value that cannot work."""


class InputError(UserError, ValueError):
  """Data or model inputs of the wrong shape, type, length or content."""


class CheckpointError(UserError):
  """A workdir whose checkpoints cannot be resumed with this config."""


class NonFiniteError(UserError, FloatingPointError):
  """Training diverged: a loss or gradient became NaN or inf. Exit code 1."""
  exit_code = 1


@contextlib.contextmanager
def reported_to_user() -> Iterator[None]:
  """Turns a UserError into `error: <message>` on stderr and its exit code."""
  try:
    yield
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(e.exit_code)


def parse_flags(argv: list[str]) -> list[str]:
  """absl `flags_parser` for `app.run`: a bad flag or `--config` override (unknown key, wrong
  type, bad config arg) becomes `error: <message>` and exit code 2 instead of a traceback."""
  try:
    return flags.FLAGS(argv)
  except (UserError, KeyError, AttributeError, flags.Error) as e:
    # The innermost UserError: config_flags re-raises one from get_config (a bad config arg) as
    # the same type with its traceback in the message, and absl wraps that in turn.
    cause, innermost = e, None
    while cause is not None:
      innermost = cause if isinstance(cause, UserError) else innermost
      cause = cause.__cause__ or cause.__context__
    if innermost is not None:
      message = str(innermost)
    elif isinstance(e, KeyError) and e.args:
      message = e.args[0]  # ml_collections' unknown-key message; str() would quote and escape it.
    else:
      message = str(e)
    print(f"error: {message}", file=sys.stderr)
    sys.exit(UserError.exit_code)
