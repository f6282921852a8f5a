r"""Evaluates the newest checkpoint of a workdir with the config it was trained with.

  python -m experiments.evaluate --workdir=runs/shapes_clip
  python -m experiments.evaluate --workdir=runs/caption --config.decode.method=beam --config.decode.beam_size=4

Prints the metrics as one JSON object. `--config.<key>=<value>` overrides the stored config.
"""
import json
import os
import sys

import ml_collections
from absl import app, flags
from ml_collections import config_flags

from experiments import launch
from mmjax import errors

_WORKDIR = flags.DEFINE_string("workdir", None, "A workdir written by experiments.train.")
flags.mark_flag_as_required("workdir")


def _stored_config(argv: list[str]) -> ml_collections.ConfigDict:
  """The workdir's config.json, read before flag parsing so `--config.*` can override it. A workdir without one
  (missing, empty, not written by experiments.train) is reported here, before JAX is imported."""
  workdir = next((a.split("=", 1)[1] for a in argv if a.startswith("--workdir=")), None)
  if workdir is None:
    return ml_collections.ConfigDict()  # absl reports the missing --workdir.
  path = os.path.join(os.path.expanduser(workdir), "config.json")
  with errors.reported_to_user():
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


_STORED_CONFIG = _stored_config(sys.argv)
with errors.flag_errors_reported(sys.argv, _STORED_CONFIG):  # The --config.* overrides apply here.
  _CONFIG = config_flags.DEFINE_config_dict("config", _STORED_CONFIG, lock_config=True)


def main(argv):
  del argv
  launch.start()
  from mmjax import trainer

  with errors.reported_to_user():
    launch.join_processes()
    launch.repair_data(_CONFIG.value.data)
    metrics = trainer.evaluate(_CONFIG.value, _WORKDIR.value)
  print(json.dumps(metrics, indent=1, sort_keys=True))


if __name__ == "__main__":
  app.run(main, flags_parser=errors.parse_flags)
