r"""Classifies real photos with the ImageNet EfficientNet-Lite0, imported from its torch checkpoint without torch.

  python -m experiments.classify_photos
  python -m experiments.classify_photos --weights=/path/to/efficientnet-lite0.pth --top_k=3

The photos are the six that ship with scikit-image and scikit-learn (mmjax.data.photos.sample_photos), prepared as
the checkpoint was evaluated (mmjax.pretrained.efficientnet: 224/256 center crop, bicubic, (pixel − 127) / 128).
Prints the `--top_k` ImageNet classes of each photo with their probabilities; `--json` adds, last, one JSON line
with the same as a table and the run's provenance, which `experiments.report --table_json` publishes (README's
table). The class names are open_clip's IMAGENET_CLASSNAMES, read from its zero_shot_metadata.py as a literal
(open_clip itself is not imported).
"""
import json
import sys

from absl import app, flags

from experiments import launch
from mmjax import errors

_WEIGHTS = flags.DEFINE_string("weights", "efficientnet-lite0",
                               "The checkpoint: a known name (mmjax.pretrained.files.KNOWN) or a .pth path.")
_TOP_K = flags.DEFINE_integer("top_k", 5, "How many classes to print per photo.")
_JSON = flags.DEFINE_bool("json", False, "Print, last, one JSON line: the top classes as a table, and provenance.")


def main(argv):
  del argv
  launch.start()
  import jax
  import numpy as np

  from mmjax.data import photos
  from mmjax.models import load_pretrained_encoder
  from mmjax import provenance
  from mmjax.pretrained import efficientnet, files
  from mmjax.publish import table

  code_commit = provenance.commit()
  with errors.reported_to_user():
    names = files.imagenet_class_names()
    samples = photos.sample_photos()
    batch = np.stack([photos.preprocess(photo, efficientnet.RESOLUTION, efficientnet.MEAN_RGB, efficientnet.STDDEV_RGB,
                                        efficientnet.CROP_FRACTION) for photo in samples.values()])
    model, params = load_pretrained_encoder(
        "image", {"name": "efficientnet_lite", "variant": "lite0", "pretrained": _WEIGHTS.value}, batch[:1],
        num_classes=len(names))
  _, aux = jax.jit(model.apply)({"params": params}, batch)
  probabilities = np.asarray(jax.nn.softmax(aux["logits"], axis=-1))
  rows = []
  for (name, photo), row in zip(samples.items(), probabilities):
    print(f"{name} ({photo.shape[0]}×{photo.shape[1]}):")
    top = np.argsort(-row)[:_TOP_K.value]
    for index in top:
      print(f"  {100 * row[index]:6.2f}%  {names[index]} ({index})")
    rows.append([name, ", ".join(f"{names[index]} {100 * row[index]:.1f}%" for index in top)])
  if _JSON.value:
    note = (f"The six photos of mmjax.data.photos.sample_photos; weights {_WEIGHTS.value}; ImageNet class names as "
            "open_clip spells them (some repeat: ImageNet has two classes named missile).")
    result = {"table": table.record(["photo", f"top-{_TOP_K.value} ImageNet classes (EfficientNet-Lite0)"], rows,
                                    note),
              **provenance.record(code_commit),
              "command": provenance.command_line("experiments.classify_photos", sys.argv)}
    print(json.dumps(result, ensure_ascii=False), flush=True)


if __name__ == "__main__":
  app.run(main, flags_parser=errors.parse_flags)
