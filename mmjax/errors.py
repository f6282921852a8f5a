"""Errors a user can fix, and how scripts report them.

Each message names what is wrong and what to do. The scripts print it on one
line and exit non-zero, without a traceback: a traceback is for bugs in mmjax.
"""
from __future__ import annotations

import contextlib
import difflib
import os
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, TypeVar

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


class OutOfMemoryError(UserError):
  """A batch that does not fit in the device's (or host's) memory: a config that cannot work on this machine."""


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
  with flag_errors_reported(argv):
    remaining = flags.FLAGS(argv)
    # A config file (ml_collections' --config) loads lazily, on first use; its errors belong here. The
    # attribute lookup raises a failed load's error; a plain string --config (experiments.ablate) has no keys.
    if "config" in flags.FLAGS and hasattr(flags.FLAGS["config"].value, "keys"):
      flags.FLAGS["config"].value.keys()
  return remaining


@contextlib.contextmanager
def flag_errors_reported(argv: list[str], config: Any = None) -> Iterator[None]:
  """A bad flag or `--config` override raised in the block becomes `error: <message>` and exit code 2. `config`
  is the config the overrides apply to when the block defines it (experiments.evaluate's stored config, whose
  `--config.*` overrides ml_collections applies as the flag is defined); by default the `--config` file's."""
  try:
    yield
  except (UserError, KeyError, AttributeError, OSError, flags.Error) as e:
    # The innermost UserError: config_flags re-raises one from get_config (a bad config arg) as
    # the same type with its traceback in the message, and absl wraps that in turn.
    cause, innermost = e, None
    while cause is not None:
      innermost = cause if isinstance(cause, UserError) else innermost
      cause = cause.__cause__ or cause.__context__
    message = str(innermost) if innermost is not None else _flag_error_message(e, argv, config)
    print(f"error: {message}", file=sys.stderr)
    sys.exit(UserError.exit_code)


def _flag_error_message(error: BaseException, argv: list[str], config: Any) -> str:
  """One plain line for a flag error: a missing config file with the configs there are, an override the config
  has no place for with the keys of the block it names (`_misplaced_override`), else the error's own text.
  ml_collections' KeyError for an unknown key is a repr (quotes escaped, a literal backslash-n before its "Did you
  mean"), wrapped by absl in an error whose text is that repr again; its argument is used as it is."""
  missing = re.search(r"\[Errno \d+\] ([^:\n]+): '([^'\n]+)'", str(error))
  if isinstance(error, OSError) and missing:
    return (f"Cannot load the config file {missing.group(2)!r}: {missing.group(1)} (a path relative to the "
            f"current directory, {os.getcwd()}). {_configs_near(missing.group(2))}")
  misplaced = _misplaced_override(argv, config if config is not None else _config_file(argv))
  if misplaced:
    return misplaced
  cause = error
  while cause is not None and not (isinstance(cause, KeyError) and cause.args):
    cause = cause.__cause__ or cause.__context__
  if cause is None:
    return " ".join(str(error).split())
  key, _, hint = str(cause.args[0]).partition("\n")
  return f"Unknown config key {key}." + (f" {hint}" if hint else "")


def _configs_near(path: str) -> str:
  """The config files (`*.py` with a get_config) in the folder of a config `path` that does not exist, or else in
  mmjax's own configs/ folder."""
  folder = os.path.dirname(path) or "."
  if not os.path.isdir(folder):
    folder = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
  names = []
  for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
    if name.endswith(".py"):
      with open(os.path.join(folder, name), encoding="utf-8", errors="replace") as f:
        names += [name] if "def get_config(" in f.read() else []
  folder = os.path.join(folder, "")
  return f"Configs in {folder}: {', '.join(names)}." if names else f"{folder} holds no config file."


_OVERRIDE = re.compile(r"^--?(?:no)?config\.([^=]+)")


def _config_file(argv: list[str]) -> Any:
  """The config of the `--config=<file>[:arg]` of `argv`, without its overrides; None if there is none or it does
  not load (that error is reported instead)."""
  if "config" not in flags.FLAGS:
    return None
  for i, arg in enumerate(argv):
    value = re.match(r"^--?config(?:=(.*))?$", arg)
    if value and (value.group(1) is not None or i + 1 < len(argv)):
      try:
        return flags.FLAGS["config"].parser.parse(value.group(1) if value.group(1) is not None else argv[i + 1])
      except Exception:  # noqa: BLE001 — any error: the original message stands.
        return None
  return None


def _misplaced_override(argv: list[str], config: Any) -> str | None:
  """For the first `--config.<a.b.c>` override of `argv` that has no place in `config`: which block lacks which
  key (or is a value, not a block), with the keys it has. None if each has a place, or there is no config."""
  for match in filter(None, map(_OVERRIDE.match, argv)):
    path = match.group(1).split(".")
    node = config
    for depth, key in enumerate(path):
      block = ".".join(["config", *path[:depth]])
      if node is None or not hasattr(node, "keys"):
        if depth == 0:
          return None
        return f"Unknown config key --config.{match.group(1)}: {block} is a value ({node!r}), not a block of keys."
      if key not in node:
        keys = sorted(node.keys())
        close = difflib.get_close_matches(key, keys, n=1)
        owner, listed = ("this config", "Its top-level keys") if depth == 0 else (block, f"The keys of {block}")
        what = f"{key!r} is not a block of {owner}" if depth < len(path) - 1 else f"{owner} has no key {key!r}"
        return (f"Unknown config key --config.{match.group(1)}: {what}" + (f"; did you mean {close[0]!r}?" if close
                else ".") + f" {listed}: {', '.join(keys)}.")
      node = node[key]
  return None
