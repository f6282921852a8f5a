r"""Trains any experiment config.

  python -m experiments.train --config=configs/shapes_clip.py --workdir=runs/shapes_clip
  python -m experiments.train --config=configs/shapes_clip.py:smoke --config.total_steps=20 --workdir=/tmp/smoke

Rerunning the same command resumes from the workdir's newest checkpoint. On several hosts, every
process runs the same command with `--coordinator_address`, `--num_processes` and `--process_id`
(or `--distributed_auto`); see mmjax/distributed.py.
"""
import json
import logging

from absl import app, flags
from ml_collections import config_flags

from mmjax import distributed, errors, runtime, trainer

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file[:arg].",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and config.json.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  runtime.keep_freed_memory()  # Before JAX starts its threads; see its docstring.
  logging.getLogger().setLevel(logging.INFO)
  with errors.reported_to_user():
    distributed.initialize_from_flags()
    metrics = trainer.train(_CONFIG.value, _WORKDIR.value)
  print(json.dumps({"workdir": _WORKDIR.value, **metrics}, indent=1, sort_keys=True))


if __name__ == "__main__":
  app.run(main, flags_parser=errors.parse_flags)
