r"""Embeds a dataset split or a folder of images with a trained run, or with a config's pretrained towers
(mmjax.inference.Predictor), into `<out>.npy` (float32 [N, D]) and `<out>.tsv` (what each row is).

  python -m experiments.embed --workdir=runs/shapes_clip --split=test --out=emb/test
  python -m experiments.embed --workdir=runs/shapes_clip --split=test --modality=text --out=emb/test_captions
  python -m experiments.embed --workdir=runs/shapes_clip --folder=photos/ --out=emb/photos
  python -m experiments.embed --config=configs/fashion_lit.py --folder=photos/ --noprojected --out=emb/lite0

A split is read as evaluation reads it (batched, sharded over devices and processes), in record order; its index
has columns row, id (the example's id where the dataset has one, else its row) and caption (where there is one).
A folder's images are every image file under it, in sorted path order; its index has columns row and path.
`--noprojected` gives the image tower's features before the projection. Process 0 writes the files.
"""
from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING

from absl import app, flags

from experiments import launch
from mmjax import errors, stored_config

if TYPE_CHECKING:
  import numpy as np

_WORKDIR = flags.DEFINE_string("workdir", None, "A workdir written by experiments.train (else --config).")
_SPLIT = flags.DEFINE_string("split", None, "A split of the config's dataset, e.g. test or test[:256].")
_FOLDER = flags.DEFINE_string("folder", None, "A folder: every image file under it (instead of --split).")
_MODALITY = flags.DEFINE_enum("modality", "image", ["image", "text"], "What to embed (text: a split's captions).")
_PROJECTED = flags.DEFINE_bool("projected", True, "The joint-space embeddings; false: the image tower's features.")
_OUT = flags.DEFINE_string("out", None, "Output path prefix: <out>.npy and <out>.tsv.")
flags.mark_flag_as_required("out")
_CONFIG = stored_config.define_config_flag(
    sys.argv, config_file_help="Without --workdir: a config file[:arg] whose pretrained towers embed.")


def image_files(folder: str) -> list[str]:
  """Every file under `folder` whose extension is an image format PIL reads, sorted by path."""
  from PIL import Image

  if not os.path.isdir(folder):
    raise errors.InputError(f"--folder={folder} is not a folder.")
  extensions = set(Image.registered_extensions())
  paths = sorted(os.path.join(root, name) for root, _, names in os.walk(folder) for name in names
                 if os.path.splitext(name)[1].lower() in extensions)
  if not paths:
    raise errors.InputError(f"--folder={folder} holds no image file (extensions PIL reads, e.g. .png, .jpg).")
  return paths


def _cell(value) -> str:
  """A TSV cell: tabs and line breaks inside a value become spaces."""
  return " ".join(str(value).split("\t")).replace("\r", " ").replace("\n", " ")


def write(out: str, embeddings: np.ndarray, header: list[str], rows: list[list]) -> None:
  """`<out>.npy` and `<out>.tsv` (the header, then one line per row of `embeddings`)."""
  import numpy as np

  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  np.save(out + ".npy", np.asarray(embeddings, np.float32))
  with open(out + ".tsv", "w", encoding="utf-8") as f:
    for row in [header, *rows]:
      f.write("\t".join(_cell(value) for value in row) + "\n")


def main(argv):
  del argv
  launch.start()
  import jax

  from mmjax import inference

  with errors.reported_to_user():
    if (_SPLIT.value is None) == (_FOLDER.value is None):
      raise errors.ConfigError("Give one of --split=<a split of the config's dataset> or --folder=<a folder of "
                               "images>.")
    if _FOLDER.value is not None:
      if _MODALITY.value != "image":
        raise errors.ConfigError("--folder embeds images: drop --modality=text, or embed a --split's captions.")
      paths = inference.check_images(image_files(_FOLDER.value))
    predictor = launch.predictor(_CONFIG.value, _WORKDIR.value)
    predictor.show_progress = sys.stderr.isatty()  # A bar only where it redraws in place (see train_log).
    if _FOLDER.value is not None:
      embeddings = predictor.embed_images(paths, projected=_PROJECTED.value)
      header, rows = ["row", "path"], [[i, path] for i, path in enumerate(paths)]
    else:
      embeddings, strings = predictor.embed_split(_SPLIT.value, _MODALITY.value, projected=_PROJECTED.value)
      ids = strings.get("id") or list(range(len(embeddings)))
      header, columns = ["row", "id"], [range(len(embeddings)), ids]
      if "caption" in strings:
        header.append("caption")
        columns.append(strings["caption"])
      rows = [list(row) for row in zip(*columns)]
  if jax.process_index() == 0:
    write(_OUT.value, embeddings, header, rows)
    print(json.dumps({"embeddings": _OUT.value + ".npy", "index": _OUT.value + ".tsv", "rows": len(embeddings),
                      "dim": int(embeddings.shape[1])}))


if __name__ == "__main__":
  app.run(main, flags_parser=errors.parse_flags)
