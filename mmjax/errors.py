"""Errors a user can fix, and how scripts report them.

Each message names what is wrong and what to do. The scripts print it on one
line and exit non-zero, without a traceback: a traceback is for bugs in mmjax.
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from typing import TypeVar

from absl import flags

T = TypeVar("T")


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


def lookup(registry: Mapping[str, T], name: str, what: str, key: str | None = None) -> T:
  """`registry[name]`, or a ConfigError naming what was asked for (`what`, e.g. "fusion", and the config `key`
  it came from, e.g. "config.model.fusion") and listing the known names."""
  check_choice(name, sorted(registry), what, key)
  return registry[name]


def check_choice(value: str, choices: Iterable[str], what: str, key: str | None = None) -> None:
  """A ConfigError naming `what` (and the config `key`) unless `value` is one of `choices` (listed in order)."""
  choices = list(choices)
  if value not in choices:
    raise ConfigError(f"Unknown {what} {value!r}" + (f" ({key})" if key else "") + f"; known: {choices}.")


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
    remaining = flags.FLAGS(argv)
    # A config file (ml_collections' --config) loads lazily, on first use; its errors belong here. The
    # attribute lookup raises a failed load's error; a plain string --config (experiments.ablate) has no keys.
    if "config" in flags.FLAGS and hasattr(flags.FLAGS["config"].value, "keys"):
      flags.FLAGS["config"].value.keys()
    return remaining
  except (UserError, KeyError, AttributeError, OSError, flags.Error) as e:
    # The innermost UserError: config_flags re-raises one from get_config (a bad config arg) as
    # the same type with its traceback in the message, and absl wraps that in turn.
    cause, innermost = e, None
    while cause is not None:
      innermost = cause if isinstance(cause, UserError) else innermost
      cause = cause.__cause__ or cause.__context__
    message = str(innermost) if innermost is not None else _flag_error_message(e)
    print(f"error: {message}", file=sys.stderr)
    sys.exit(UserError.exit_code)


def _flag_error_message(error: BaseException) -> str:
  """One plain line for a flag error. For an unknown key ml_collections raises a KeyError whose str() is a
  repr (quotes escaped, a literal backslash-n before its "Did you mean"), and absl wraps it in an error whose
  text is that repr again; so the message is built from the outermost KeyError's argument itself."""
  missing = re.search(r"\[Errno \d+\] ([^:\n]+): '([^'\n]+)'", str(error))
  if isinstance(error, OSError) and missing:
    return (f"Cannot load the config file {missing.group(2)!r}: {missing.group(1)} (a path relative to the "
            f"current directory, {os.getcwd()}).")
  cause = error
  while cause is not None and not (isinstance(cause, KeyError) and cause.args):
    cause = cause.__cause__ or cause.__context__
  if cause is None:
    return " ".join(str(error).split())
  key, _, hint = str(cause.args[0]).partition("\n")
  return f"Unknown config key {key}." + (f" {hint}" if hint else "")
