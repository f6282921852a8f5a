r"""Writes a small folder dataset of coloured MNIST digits with a manifest (mmjax.data.folder.example), the
README's worked example of training on your own data.

  python -m experiments.make_example_folder --out=data/digits --count=600
  python -m experiments.train --config=configs/folder.py:task=caption --config.data.path=data/digits \
      --workdir=runs/digits_caption
"""
from absl import app, flags

from mmjax import errors

_OUT = flags.DEFINE_string("out", None, "The folder to write (images/ and manifest.jsonl).")
_COUNT = flags.DEFINE_integer("count", 600, "How many images.")
_SEED = flags.DEFINE_integer("seed", 0, "Which digits and colours.")
flags.mark_flag_as_required("out")


def main(argv):
  del argv
  from mmjax.data.folder import example

  with errors.reported_to_user():
    print(example.write_example_folder(_OUT.value, _COUNT.value, _SEED.value))


if __name__ == "__main__":
  app.run(main, flags_parser=errors.parse_flags)
