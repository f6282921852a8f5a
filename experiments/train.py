r"""Trains any experiment config.

  python -m experiments.train --config=configs/shapes_clip.py --workdir=runs/shapes_clip
  python -m experiments.train --config=configs/shapes_clip.py:smoke --config.total_steps=20 --workdir=/tmp/smoke

Prints a progress bar (on a terminal; into a file or pipe, one line per log step), one line per evaluation and,
last, the final metrics as JSON (also written to `<workdir>/final_metrics.json`); `--verbosity=0` adds every INFO
log line. Rerunning the same command resumes from the workdir's newest checkpoint. On several hosts, every process
runs the same command with `--coordinator_address`, `--num_processes` and `--process_id` (or `--distributed_auto`); see
mmjax/parallel/distributed.py.
"""
import json

from absl import app, flags
from ml_collections import config_flags

from experiments import launch
from mmjax import errors

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file[:arg].", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and config.json.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  launch.start()
  from mmjax import trainer

  with errors.reported_to_user():
    launch.join_processes()
    launch.repair_data(_CONFIG.value.data)
    metrics = trainer.train(_CONFIG.value, _WORKDIR.value)
  print(json.dumps({"workdir": _WORKDIR.value, **metrics}, indent=1, sort_keys=True))


if __name__ == "__main__":
  app.run(main, flags_parser=errors.parse_flags)
