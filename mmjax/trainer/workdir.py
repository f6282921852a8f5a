"""A workdir's `config.json`: checked before a resume, written once the run is built.

Resuming with a config that changes the model, the optimizer, the data or the
seed would either fail deep inside a checkpoint restore or, worse, silently
train a different run than the one the checkpoints came from. So a restart is
compared with the stored config first, and every key that differs is named,
except the config's own `resume_safe_keys` (see configs/common.py: keys that
change how a run is laid out, logged, saved or evaluated, not what it computes).
Those may change, and the resume says which did, so the log tells what the
continued run is. (The lock that keeps a second run out is in workdir_lock.)
"""
from __future__ import annotations

import json
import logging
import os
from typing import Any

import jax
import ml_collections

from mmjax import errors
from mmjax.stored_config import CONFIG_FILE


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
  if isinstance(tree, dict):
    flat = {}
    for key, value in tree.items():
      flat.update(_flatten(value, f"{prefix}{key}."))
    return flat
  return {prefix[:-1]: tree}


def _resume_safe(key: str, safe_keys: tuple[str, ...]) -> bool:
  return any(key == safe or key.startswith(safe + ".") for safe in safe_keys)


def config_json(config: ml_collections.ConfigDict) -> dict[str, Any]:
  return json.loads(config.to_json_best_effort())


def _show(flat: dict[str, Any], key: str) -> str:
  return json.dumps(flat[key]) if key in flat else "(absent)"


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, str]:
  """{key: "key: old → new"} for every flattened key whose value differs or that only one config has."""
  old_flat, new_flat = _flatten(old), _flatten(new)
  return {key: f"{key}: {_show(old_flat, key)} → {_show(new_flat, key)}"
          for key in sorted(old_flat.keys() | new_flat.keys())
          if (key in old_flat, old_flat.get(key)) != (key in new_flat, new_flat.get(key))}


def check_resumable(config: ml_collections.ConfigDict, workdir: str, has_checkpoint: bool) -> None:
  """Raises ConfigError if `workdir` holds a checkpoint of a run `config` cannot continue. At a resume it says,
  once, which resume-safe keys changed (`key: old → new`) and that a new `config.init_from` is ignored: the run
  goes on from its own checkpoint, as the restore order says. (A fine-tuned run resumed with the init_from it
  started from hears nothing of it: that is the plain resume.)"""
  if not has_checkpoint:
    return
  path = os.path.join(workdir, CONFIG_FILE)
  stored = None
  if os.path.exists(path):
    with open(path) as f:
      try:
        stored = json.load(f)
      except json.JSONDecodeError as e:
        raise errors.ConfigError(f"{path} is not valid JSON ({e}); restore it from a backup or delete "
                                 "it to resume with the new config unchecked.") from e
  changes = {} if stored is None else config_changes(stored, config_json(config))
  breaking = [line for key, line in changes.items() if not _resume_safe(key, tuple(config.resume_safe_keys))]
  if breaking:
    listed = "\n  ".join(breaking)
    raise errors.ConfigError(
        f"{workdir} holds checkpoints of a run with a different config, which this run cannot "
        f"continue:\n  {listed}\nUse a new --workdir, or rerun with the stored values (see {path}).")
  if jax.process_index() == 0:
    if changes:
      logging.warning("Resuming %s with changed resume-safe keys: %s.", workdir, "; ".join(changes.values()))
    if config.init_from and (stored is None or "init_from" in changes):
      logging.warning("config.init_from=%r is ignored: %s holds checkpoints, so the run resumes from its own "
                      "newest one (fine-tune in a new --workdir to start from init_from).", config.init_from, workdir)


def write_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  """The resolved config, so a run can always be reproduced: written once every config check has passed and
  before anything trains, so a refused config leaves the workdir as it was.

  Written atomically: a crash mid-write must not leave a truncated file that
  blocks the next resume.
  """
  if jax.process_index() == 0:
    path = os.path.join(workdir, CONFIG_FILE)
    with open(path + ".tmp", "w") as f:
      f.write(config.to_json_best_effort(indent=2))
    os.replace(path + ".tmp", path)
