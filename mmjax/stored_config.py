"""A workdir's stored config (`config.json`, written by mmjax.trainer.workdir), read back to evaluate or predict
with the config a run was trained with.

Here, not in mmjax.trainer, because the scripts read it before their flags are parsed (their `--config.<key>`
overrides apply to it) and must not import JAX for that: a bad flag is reported within a second, and JAX
starts no thread before the script's first line (experiments/launch.py).
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence

import ml_collections
from absl import flags
from ml_collections import config_flags

from mmjax import errors

CONFIG_FILE = "config.json"


def read(workdir: str) -> ml_collections.ConfigDict:
  """The config `workdir` was trained with. A CheckpointError for a workdir that holds no run (missing, empty,
  not written by experiments.train) or whose config.json is damaged."""
  path = os.path.join(os.path.expanduser(workdir), CONFIG_FILE)
  if not os.path.exists(path) and not os.path.isdir(os.path.join(os.path.expanduser(workdir), "checkpoints")):
    raise errors.CheckpointError(f"no checkpoint to evaluate in {workdir}; train first with "
                                 f"python -m experiments.train --workdir={workdir} --config=...")
  if not os.path.exists(path):
    raise errors.CheckpointError(f"{path} does not exist, so the checkpoints beside it cannot be evaluated: "
                                 "--workdir must be a directory written by experiments.train.")
  with open(path) as f:
    try:
      return ml_collections.ConfigDict(json.load(f))
    except json.JSONDecodeError as e:
      raise errors.CheckpointError(f"{path} is not valid JSON ({e}); restore it from a backup.") from e


def define_config_flag(argv: Sequence[str], config_file_help: str | None = None) -> flags.FlagHolder:
  """Defines a script's `--config`: with `--workdir=<dir>` in `argv`, that workdir's stored config (read now,
  before the flags are parsed, so `--config.<key>=<value>` overrides it; a bad workdir is an `error:` line);
  without, a config file (`--config=configs/x.py:arg`) if `config_file_help` describes one, else an empty
  config (absl then reports the missing --workdir)."""
  workdir = next((arg.split("=", 1)[1] for arg in argv if arg.startswith("--workdir=")), None)
  if workdir is None and config_file_help is not None:
    return config_flags.DEFINE_config_file("config", None, config_file_help, lock_config=True)
  stored = ml_collections.ConfigDict()
  if workdir is not None:
    with errors.reported_to_user():
      stored = read(workdir)
  with errors.flag_errors_reported(list(argv), stored):  # The --config.* overrides apply here.
    return config_flags.DEFINE_config_dict("config", stored, lock_config=True)
