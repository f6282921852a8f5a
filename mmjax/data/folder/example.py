"""A small folder dataset made of real handwritten MNIST digits, to try the folder pipeline on (README's
worked example, the tests and the notebook).

Each digit is painted in one of a few colours on a dark background, saved at a random size and aspect (28 to
96 pixels a side) as PNG or JPEG, and described by a manifest row with every field a task reads: two captions
("a red seven", "the digit seven in red"), a question about its digit or its colour with the answer and the
question type, and its label (the digit's name). Rows carry no split, so config.data.split_ratio splits them.
"""
from __future__ import annotations

import json
import os

import numpy as np
from PIL import Image

from mmjax.data.av_digits import LABEL_NAMES, load_digit_images

COLOURS = {"red": (230, 40, 40), "green": (40, 200, 60), "blue": (50, 90, 240), "yellow": (240, 220, 40),
           "white": (245, 245, 245)}


def write_example_folder(out: str, count: int = 600, seed: int = 0) -> str:
  """Writes `count` images under `out`/images and `out`/manifest.jsonl; returns the manifest's path."""
  rng = np.random.default_rng(seed)
  digits = load_digit_images()
  os.makedirs(os.path.join(out, "images"), exist_ok=True)
  rows = []
  for index, source in enumerate(rng.choice(len(digits.images), size=count, replace=False)):
    digit, colour = LABEL_NAMES[int(digits.labels[source])], str(rng.choice(list(COLOURS)))
    ink = digits.images[source].astype(np.float32)[..., None] / 255.0
    pixels = (ink * np.asarray(COLOURS[colour], np.float32) + (1 - ink) * 20).astype(np.uint8)
    width, height = (int(v) for v in rng.integers(28, 97, size=2))
    image = Image.fromarray(pixels).resize((width, height), Image.Resampling.BILINEAR)
    name = f"images/{index:04d}." + ("png" if index % 2 else "jpg")
    image.save(os.path.join(out, name), quality=95)
    asks_colour = bool(rng.integers(2))
    rows.append({
        "image": name,
        "captions": [f"a {colour} {digit}", f"the digit {digit} in {colour}"],
        "question": "what colour is the digit?" if asks_colour else "which digit is this?",
        "answer": colour if asks_colour else digit,
        "question_type": "colour" if asks_colour else "digit",
        "label": digit,
    })
  path = os.path.join(out, "manifest.jsonl")
  with open(path, "w") as f:
    f.writelines(json.dumps(row) + "\n" for row in rows)
  return path
