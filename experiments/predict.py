r"""Predicts on image files with a trained run, or with a config's pretrained towers: captions, answers, image–text
scores and zero-shot classes (mmjax.inference.Predictor).

  python -m experiments.predict --workdir=runs/caption --image=a.jpg --image=b.png
  python -m experiments.predict --workdir=runs/caption --image=a.jpg --config.decode.method=beam
  python -m experiments.predict --workdir=runs/vqa --image=a.jpg --question="what colour is the circle?"
  python -m experiments.predict --workdir=runs/shapes_clip --image=a.jpg --texts="a red circle|a blue square" \
      --classes=red,green,blue --templates="a {} shape"
  python -m experiments.predict --config=configs/fashion_lit.py --image=shoe.jpg --classes=sneaker,sandal,bag

Prints one JSON object per image: {"image": path, "caption": ..., "question": ..., "answer": ..., "scores": {text:
cosine similarity}, "classes": {name: probability of the --top_k most likely}, "label": a classifier's class},
with what was asked for (a captioning run captions and a classifier labels when nothing is).
`--config.<key>=<value>` overrides the workdir's stored config, or the config file's. Without --workdir, the towers
the config names as `pretrained` are imported and the rest is randomly initialised.
"""
from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

from absl import app, flags

from experiments import launch
from mmjax import errors, stored_config

if TYPE_CHECKING:  # The scripts import JAX (through mmjax.inference) only in main().
  from mmjax.inference import Predictor

_WORKDIR = flags.DEFINE_string("workdir", None, "A workdir written by experiments.train (else --config).")
_IMAGES = flags.DEFINE_multi_string("image", None, "An image file; repeat the flag for several.")
flags.mark_flag_as_required("image")
_CAPTION = flags.DEFINE_bool("caption", False, "Caption each image (a captioning run).")
_QUESTION = flags.DEFINE_string("question", None, "A question to answer about each image (a VQA run).")
_TEXTS = flags.DEFINE_string("texts", None, "Texts separated by |: the cosine similarity of each image with each "
                             "(a contrastive run).")
_CLASSES = flags.DEFINE_list("classes", None, "Class names: zero-shot probabilities (a contrastive run).")
_TEMPLATES = flags.DEFINE_multi_string("templates", ["a photo of a {}."], "Prompt templates of --classes, each with a "
                                       "{} for the class name; repeat the flag for an ensemble.")
_TOP_K = flags.DEFINE_integer("top_k", 5, "How many of --classes to print per image, most likely first.")
_CONFIG = stored_config.define_config_flag(
    sys.argv, config_file_help="Without --workdir: a config file[:arg] whose pretrained towers predict.")


def predictions(predictor: Predictor, images: list[str]) -> list[dict]:
  """One dict per image of what the flags ask for."""
  rows = [{"image": image} for image in images]
  asked = _CAPTION.value or _QUESTION.value is not None or _TEXTS.value is not None or _CLASSES.value
  if not asked and not {"caption", "label"} & set(predictor.methods()):
    raise errors.ConfigError("Nothing to predict: pass --caption, --question, --texts or --classes (this run "
                             f"supports: {', '.join(predictor.methods()) or 'no prediction'}).")
  if _CAPTION.value or (not asked and "caption" in predictor.methods()):
    for row, caption in zip(rows, predictor.caption(images)):
      row["caption"] = caption
  if not asked and "label" in predictor.methods():
    for row, label in zip(rows, predictor.label(images)):
      row["label"] = label
  if _QUESTION.value is not None:
    for row, answer in zip(rows, predictor.answer(images, [_QUESTION.value] * len(images))):
      row.update(question=_QUESTION.value, answer=answer)
  if _TEXTS.value is not None:
    texts = [text.strip() for text in _TEXTS.value.split("|") if text.strip()]
    for row, scores in zip(rows, predictor.score(images, texts)):
      row["scores"] = {text: round(float(score), 4) for text, score in zip(texts, scores)}
  if _CLASSES.value:
    for row, probabilities in zip(rows, predictor.classify(images, _CLASSES.value, _TEMPLATES.value)):
      top = probabilities.argsort()[::-1][:_TOP_K.value]
      row["classes"] = {_CLASSES.value[i]: round(float(probabilities[i]), 4) for i in top}
  return rows


def main(argv):
  del argv
  launch.start()
  import jax

  from mmjax import inference

  with errors.reported_to_user():
    images = inference.check_images(_IMAGES.value)  # Before anything is built: a wrong path is said at once.
    predictor = launch.predictor(_CONFIG.value, _WORKDIR.value)
    rows = predictions(predictor, images)
  if jax.process_index() == 0:
    for row in rows:
      print(json.dumps(row))


if __name__ == "__main__":
  app.run(main, flags_parser=errors.parse_flags)
