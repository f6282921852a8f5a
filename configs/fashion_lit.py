r"""Locked-image tuning (LiT, Zhai et al. 2022) on Fashion-MNIST from two pretrained towers.

  apt-get install dataset-fashion-mnist   # the idx files, once
  python -m experiments.train --config=configs/fashion_lit.py --workdir=runs/fashion_lit

The image tower is EfficientNet-Lite0 (ImageNet-1k) and stays locked; the text tower is all-MiniLM-L6-v2,
locked too (`text=locked`, the default) or trained (`text=unlocked`); the two projections and the
temperature are trained, on captions made from the class names with a few templates. Training sees 7
classes; the evals classify the test split zero-shot with a prompt ensemble on those 7, on the 3 held out
(chance 1/3: only the pretrained text tower can name them) and on all 10, next to a linear probe on the same
frozen image features.

The locked image tower's features are computed once per split and reused by every run and evaluation
(`config.data.image_features`, mmjax.data.features): on this project's 2-core CPU EfficientNet-Lite0 runs at
~45 images/s at 224×224, so the first run spends ~9 minutes on the 24,000 images of `train[:14000]` and `test`,
and later runs none. `cache=False` runs the tower inside the model instead (the same function, slower).

Args (after a colon): `smoke` (small images and few steps, what the tests run), `text=locked|unlocked`,
`steps=N`, `heldout=False` (train on all 10 classes), `cache=False`.
"""
import math

import ml_collections

from configs import common
from mmjax import errors

CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot")
# One of each kind — a garment, a shoe, an accessory — so no held-out class has no seen neighbour at all.
HELDOUT = ("dress", "sneaker", "bag")
SEEN = tuple(name for name in CLASSES if name not in HELDOUT)
TRAIN_TEMPLATES = ("a photo of a {}.", "a black and white photo of a {}.", "a low resolution photo of a {}.",
                   "a photo of the {}.", "a close-up photo of a {}.")
# The zero-shot prompt ensemble: the training templates and a few it never saw.
EVAL_TEMPLATES = TRAIN_TEMPLATES + ("a grayscale photo of a {}.", "a blurry photo of a {}.", "an image of a {}.",
                                    "a product photo of a {}.")
# EfficientNet-Lite0's own preprocessing (mmjax.pretrained.efficientnet): 224×224, (x − 0.498) / 0.502 per channel.
LITE0_RESOLUTION, LITE0_MEAN, LITE0_STD = 224, (0.498, 0.498, 0.498), (0.502, 0.502, 0.502)
# all-MiniLM-L6-v2 (its config.json): BERT, 6 layers of width 384, 12 heads.
LITE0 = dict(name="efficientnet_lite", variant="lite0", pretrained="efficientnet-lite0")
MINILM = dict(name="bert", pretrained="all-MiniLM-L6-v2", vocab_size=30522, width=384, depth=6, num_heads=12,
              mlp_dim=1536, max_len=512, pool="mean", normalize=True)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(arg, smoke=False, text="locked", steps=0, heldout=True, cache=True)
  errors.check_choice(arg.text, ("locked", "unlocked"), "text tower mode", "config arg text")
  config = common.run(total_steps=300, batch_size=128, eval_batch_size=256, checkpoint_every_steps=100)
  config.data = ml_collections.ConfigDict(dict(
      name="fashion_mnist", variant="default", data_dir=common.DEFAULT_DATA_DIR,
      source_dir="/usr/share/datasets/fashion-mnist", worker_count=0,
      tokenizer=dict(name="wordpiece", path="all-MiniLM-L6-v2"), text_len=16, templates=list(TRAIN_TEMPLATES),
      image_size=LITE0_RESOLUTION, image_mean=LITE0_MEAN, image_std=LITE0_STD, train_split="train[:14000]",
      classes=",".join(SEEN) if arg.heldout else "", image_features=dict(LITE0) if arg.cache else None))
  config.model = ml_collections.ConfigDict(dict(
      name="two_tower",
      image=dict(name="features") if arg.cache else dict(LITE0),
      text=dict(MINILM),
      embed_dim=256,
      logit_scale_init=math.log(10.0),
      logit_bias_init=None,
      **common.compute_settings(),
  ))
  locked = ([] if arg.cache else ["image"]) + (["text"] if arg.text == "locked" else [])
  config.freeze = ",".join(locked)
  config.task = ml_collections.ConfigDict(dict(name="contrastive", loss="softmax"))
  # A pretrained text tower fine-tunes at a smaller step than fresh projections.
  config.optim = common.optim(lr=1e-3 if arg.text == "locked" else 1e-4, warmup_steps=30, weight_decay=1e-4)

  zero_shot = dict(name="zero_shot_classification", split="test", label="label", templates=list(EVAL_TEMPLATES),
                   every_steps=0)
  config.evals = ml_collections.ConfigDict(dict(
      zeroshot_seen=dict(zero_shot, classes=",".join(SEEN)),
      zeroshot_heldout=dict(zero_shot, classes=",".join(HELDOUT)),
      zeroshot_all=dict(zero_shot, classes=",".join(CLASSES)),
      probe=dict(name="linear_probe", split="test", train_split="train[:14000]", train_examples=10_000, label="label",
                 classes=",".join(CLASSES), every_steps=0),
  ))
  return common.finish(config, arg, smoke_model={
      "data.image_size": 64, "data.train_split": "train", "batch_size": 16, "eval_batch_size": 32,
      "evals.probe.train_split": "train", "evals.probe.train_examples": 64})
