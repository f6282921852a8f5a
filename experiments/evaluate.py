r"""Evaluates the newest checkpoint of a workdir with the config it was trained with.

  python -m experiments.evaluate --workdir=runs/shapes_clip
  python -m experiments.evaluate --workdir=runs/caption --config.decode.method=beam --config.decode.beam_size=4
  python -m experiments.evaluate --workdir=runs/vqa --predictions_dir=runs/vqa/predictions

Prints the metrics as one JSON object. `--predictions_dir` also writes each VQA or captioning eval's answers or
captions, one JSON line per example, to `<dir>/<eval key>.jsonl` (e.g. VQA: question, question_type, answer,
predicted, correct), for error analysis. `--config.<key>=<value>` overrides the stored config (mmjax.stored_config).
"""
import json
import sys

from absl import app, flags

from experiments import launch
from mmjax import errors, stored_config

_WORKDIR = flags.DEFINE_string("workdir", None, "A workdir written by experiments.train.")
flags.mark_flag_as_required("workdir")
_PREDICTIONS_DIR = flags.DEFINE_string("predictions_dir", None, "Also write the per-example predictions of the VQA "
                                       "and captioning evals to <dir>/<eval key>.jsonl.")
_CONFIG = stored_config.define_config_flag(sys.argv)


def main(argv):
  del argv
  launch.start()
  from mmjax import trainer

  with errors.reported_to_user():
    launch.join_processes()
    launch.repair_data(_CONFIG.value.data)
    metrics = trainer.evaluate(_CONFIG.value, _WORKDIR.value, predictions_dir=_PREDICTIONS_DIR.value)
  print(json.dumps(metrics, indent=1, sort_keys=True))


if __name__ == "__main__":
  app.run(main, flags_parser=errors.parse_flags)
