"""Shared config blocks, the `arg` parser and the smoke shrink used by every experiment config.

A config file exposes `get_config(arg: str | None)` where `arg` is a short comma-separated string such as
`"smoke,loss=sigmoid"` (`parse_arg` turns it into typed values), and may expose `SWEEPS`, a plain dict of
ablation grids (see mmjax.ablation). Configs are data: they import this module, the standard library and
ml_collections only (mmjax.errors for the error type), never jax or the rest of mmjax, so loading one is
instant. Values that belong to a dataset (number of classes, sample rate, vocabulary) are not here: they
come from the dataset's metadata when a run is built. Block selectors are called `name` everywhere
(`model.name`, `model.encoders.image.name`, `task.name`, `evals.<key>.name`, `data.name`).
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import ml_collections

from mmjax import errors

# mmjax.models.FUSIONS by name, and those that yield fused tokens (TOKEN_LEVEL, what a decoder cross-attends to):
# configs import nothing from mmjax but its errors, so tests/configs checks these agree with the registry.
FUSIONS = ("concat", "early", "weighted_mean", "late_mean", "late_vote", "late_learned", "cross_attention",
           "bottleneck", "mult", "gated", "hybrid", "relation")
TOKEN_FUSIONS = ("concat", "cross_attention", "bottleneck", "mult")

# How many MB of a train split the loader may hold in memory, decoded (config.data.memory_cache_mb).
MEMORY_CACHE_MB = 1024

DEFAULT_DATA_DIR = os.environ.get(
    "MMJAX_DATA_DIR", os.path.join(os.path.expanduser("~"), ".cache", "mmjax", "tensorflow_datasets"))

# Keys that may change between starts of one workdir (mmjax.trainer.workdir checks every other key against
# the workdir's config.json). Most change how a run is laid out, logged, saved or evaluated, not what it
# computes: the mesh, sharding rules, gradient accumulation and remat are tested to give the same training
# (tests/trainer). The schedule's scalars are here too, because lowering the learning rate after a divergence
# or extending `total_steps` are the usual ways to continue a run; they leave every array in the checkpoint
# the same shape. `decode` only changes evaluation, and `init_from` is ignored once the workdir has a
# checkpoint of its own. The memory cache changes how batches are read, not which. The worker count is not here:
# Grain's workers each batch their own records (another row order), and its loader refuses a state saved with
# another count, so a change is refused up front with the other keys instead of by Grain after compiling.
RESUME_SAFE_KEYS = ("total_steps", "log_every_steps", "checkpoint_every_steps", "keep_checkpoints",
                    "eval_batch_size", "evals", "decode", "mesh", "sharding_rules", "grad_accum_steps",
                    "model.remat", "data.data_dir", "data.memory_cache_mb", "optim.lr",
                    "optim.warmup_steps", "optim.end_lr_factor", "optim.weight_decay", "init_from", "resume_safe_keys")

# What `smoke` does to every config's run: 60 steps at batch 64, logging every 10 steps, checkpoints and
# evals every 30 (a config adds its own model shrink).
SMOKE_RUN = {"total_steps": 60, "batch_size": 64, "eval_batch_size": 128, "log_every_steps": 10,
             "checkpoint_every_steps": 30, "optim.warmup_steps": 10}
SMOKE_EVAL_EVERY = 30

# Logical axis → mesh axes, for every model here (every weight is named with these axes). The batch is
# split over `data` and `fsdp`; weights' `embed` dimension over `fsdp` (ZeRO-3: gathered just before use);
# attention heads, the MLP's hidden units and the vocabulary over `model` (Megatron-style tensor
# parallelism: each model shard computes its heads and hidden units, and one all-reduce per block sums
# them). A mesh axis is used once per array: activations [batch, length, embed] are split over the batch only.
TRANSFORMER_SHARDING_RULES = (
    ("batch", ("data", "fsdp")),
    ("embed", "fsdp"),
    ("heads", "model"),
    ("mlp", "model"),
    ("vocab", "model"),
    ("length", None),
    ("kv", None),
    ("joint", None),
)


def parse_arg(arg: str | None, **defaults: Any) -> ml_collections.ConfigDict:
  """Parses `"a=1,b=x,flag"` against typed defaults.

  A bare name sets a boolean default to True. Unknown names are an error that
  lists the known ones, so `smoke,fusoin=x` fails loudly instead of being ignored. A default of None leaves the
  value as given (a string; "true" for a bare name), for `typed_arg` to type once the config knows its default.
  """
  result = ml_collections.ConfigDict(dict(defaults))
  for item in filter(None, (part.strip() for part in (arg or "").split(","))):
    name, has_value, value = item.partition("=")
    if name not in defaults:
      raise errors.ConfigError(f"Unknown config arg {name!r} in {arg!r}; known args: {sorted(defaults)}.")
    default = defaults[name]
    if not has_value:
      if not isinstance(default, bool) and default is not None:
        raise errors.ConfigError(f"Config arg {name!r} needs a value, e.g. {name}={default!r}.")
      result[name] = True if default is not None else "true"
    else:
      result[name] = value if default is None else _typed(name, value, default)
  return result


def typed_arg(arg: ml_collections.ConfigDict, name: str, default: Any) -> Any:
  """`arg[name]` (parsed with a default of None) typed like `default`, or `default` if it was not given: for an
  arg whose default depends on another, e.g. one per VQA head."""
  return default if arg[name] is None else _typed(name, arg[name], default)


def _typed(name: str, value: str, like: Any) -> Any:
  """The arg `name`'s `value` as the type of `like`."""
  if isinstance(like, bool):
    if value.lower() not in ("true", "false", "1", "0"):
      raise errors.ConfigError(f"Config arg {name!r} is a boolean; got {value!r}.")
    return value.lower() in ("true", "1")
  try:
    return type(like)(value)
  except ValueError as e:
    raise errors.ConfigError(f"Config arg {name!r} expects {type(like).__name__}; got {value!r}.") from e


def shapes_data(*, smoke: bool, text_len: int, question_len: int = 14, answer_len: int = 2,
                hard_negatives: bool = False, fresh_questions: bool = False) -> ml_collections.ConfigDict:
  """The `config.data` block for the offline Shapes dataset (mmjax.data.shapes).

  `smoke` picks the tfds builder config "small" (tests, smoke runs) instead of "default".
  `text_len`, `question_len` and `answer_len` are the token lengths (eos included) of the caption, the VQA
  question and the VQA answer. `hard_negatives` adds a `negative_text` field to training batches, which the
  contrastive task uses as extra negatives (mmjax.data.shapes.hard_negative_caption). `worker_count`: the
  loader's worker processes (0: decode in the training process). `memory_cache_mb`: with no workers, the train
  loader holds the train split in memory, its PNGs decoded once, when it takes at most this many MB (the
  default split: 668 MB; 0: read and decode every batch from disk, as smoke runs do: their few steps cost less than
  decoding the split up front, ~0.5 s for the small variant each time a loader starts, which the test suite does
  hundreds of times).
  """
  return ml_collections.ConfigDict(dict(
      name="shapes", variant="small" if smoke else "default", data_dir=DEFAULT_DATA_DIR, text_len=text_len,
      question_len=question_len, answer_len=answer_len, worker_count=0, hard_negatives=hard_negatives,
      fresh_questions=fresh_questions, question_type_weights=(), memory_cache_mb=0 if smoke else MEMORY_CACHE_MB))


def moving_shapes_data(*, smoke: bool, text_len: int = 16, question_len: int = 16,
                       answer_len: int = 2) -> ml_collections.ConfigDict:
  """The `config.data` block for the offline Moving Shapes clips (mmjax.data.moving_shapes): `smoke` picks the
  builder config "small"; token lengths as in shapes_data (the longest caption is 13 words, question 15).
  Batches carry `video` f32[T, 48, 48, 3] and its middle frame as `image`. `memory_cache_mb` as in shapes_data
  (the default train split: 532 MB)."""
  return ml_collections.ConfigDict(dict(
      name="moving_shapes", variant="small" if smoke else "default", data_dir=DEFAULT_DATA_DIR, text_len=text_len,
      question_len=question_len, answer_len=answer_len, worker_count=0,
      memory_cache_mb=0 if smoke else MEMORY_CACHE_MB))


def av_digits_data(*, variant: str, smoke: bool) -> ml_collections.ConfigDict:
  """The `config.data` block for the offline AV-Digits dataset (mmjax.data.av_digits).

  `variant` is "redundant" or "synergy"; `smoke` picks its "_small" builder config (tests, smoke runs).
  `text_len` is the number word's length in characters, eos included. Training-time augmentation
  (mmjax.data.av_digits.AugmentAvDigits; 0: none): `image_shift` pixels of random shift, `audio_stretch` the
  largest relative change of speed.
  """
  return ml_collections.ConfigDict(dict(name="av_digits", variant=variant + ("_small" if smoke else ""),
                                        data_dir=DEFAULT_DATA_DIR, text_len=16, worker_count=0, image_shift=0,
                                        audio_stretch=0.0))


def spoken_shapes_data(*, name: str, smoke: bool, noisy: bool = False, text_len: int = 90, question_len: int = 72,
                       answer_len: int = 10) -> ml_collections.ConfigDict:
  """The `config.data` block of the offline Spoken Shapes datasets (mmjax.data.spoken_shapes): `name`
  "spoken_shapes" (speech to text) or "spoken_vqa" (a scene and its spoken question). `smoke` picks the builder
  config "small" (tests, smoke runs); `noisy` the speech-to-text variant with white noise 5 dB below the speech
  (20 dB by default). Lengths are in characters, eos included: `text_len` of a transcript (the longest caption
  has 87), `question_len` and `answer_len` of the written question and the answer."""
  variant = "small" if smoke else "noisy" if noisy else "default"
  return ml_collections.ConfigDict(dict(name=name, variant=variant, data_dir=DEFAULT_DATA_DIR, text_len=text_len,
                                        question_len=question_len, answer_len=answer_len, worker_count=0))


def folder_data(*, path: str = "", manifest: str = "manifest.jsonl", image_size: int = 224,
                image_mean: tuple[float, ...] = (0.5, 0.5, 0.5), image_std: tuple[float, ...] = (0.5, 0.5, 0.5),
                text_len: int = 32, **overrides: Any) -> ml_collections.ConfigDict:
  """The `config.data` block of a folder dataset: the user's files and a manifest (mmjax.data.folder).

  path: the folder; manifest: a JSON-lines or CSV file in it ("train.jsonl"), or one per split
  ("train=train.jsonl,test=test.jsonl"); rows without a split are dealt by `split_ratio` ("train=0.8,test=0.2"),
  seeded by `split_seed`. label_names: the class names, comma-separated ("" = the labels found); skip_bad_rows:
  leave out (and report) rows whose files are missing or broken instead of stopping. The build stores images
  with the shorter side at most `store_short_side` (0: as they are; by default 2 × image_size, following it, so
  every default crop downscales stored pixels: a training crop of ≥ 35% of the area keeps ≥ 0.51 of the shorter
  side) and audio at `sample_rate`.
  Preprocessing: `image_size`, normalised by the image tower's `image_mean` / `image_std` (on 0..1 pixels);
  training crops a random box of at least `train_crop_scale` of the area (0: the eval crop) and flips with
  `train_flip`; evaluation resizes the shorter side to image_size / `crop_fraction` and takes the centre.
  `audio_seconds` of audio per example; token lengths `text_len`, `question_len`, `answer_len`.
  `image_features`: a locked image tower's block whose features are computed once per split and read instead
  of the images (mmjax.data.features). `memory_cache_mb`: the train loader holds the train split in memory when
  it takes at most this many MB, its images decoded when their pixels fit too (0: reads every batch from disk).
  """
  config = dict(name="folder", path=path, manifest=manifest, split_ratio="", split_seed=0, label_names="",
                skip_bad_rows=False, memory_cache_mb=MEMORY_CACHE_MB, image_size=image_size,
                image_mean=image_mean, image_std=image_std, crop_fraction=0.875, train_crop_scale=0.35, train_flip=True,
                sample_rate=16_000, audio_seconds=2.0, text_len=text_len, question_len=16, answer_len=4,
                tokenizer=dict(name="dataset", path=""), train_split="train", image_features=None,
                data_dir=DEFAULT_DATA_DIR, worker_count=0)
  config.update(overrides)
  config = ml_collections.ConfigDict(config)
  if "store_short_side" not in overrides:
    config.store_short_side = config.get_ref("image_size") * 2
  return config


def prepared_data(*, tfds_name: str, fields: Mapping[str, str], variant: str = "",
                  **overrides: Any) -> ml_collections.ConfigDict:
  """The `config.data` block of a tfds dataset prepared elsewhere (array_record) and copied into `data_dir`,
  read by name (mmjax.data.prepared): `fields` maps mmjax fields (image, captions, question, answer,
  question_type, label, id) to its feature paths, e.g. {"image": "image", "captions": "captions/text"};
  `variant` is its builder config, if it has several. Preprocessing as folder_data's."""
  config = folder_data(**overrides).to_dict()
  for key in ("path", "manifest", "split_ratio", "split_seed", "label_names", "skip_bad_rows", "store_short_side"):
    config.pop(key)
  config.update(name="tfds", tfds_name=tfds_name, variant=variant, fields=dict(fields))
  return ml_collections.ConfigDict(config)


def vqa_model_and_task(*, head: str, fused: Mapping[str, Any], inputs: Mapping[str, str],
                       decoder: Mapping[str, Any]) -> tuple[ml_collections.ConfigDict, ml_collections.ConfigDict]:
  """`config.model` and `config.task` of VQA over fused inputs (`fused`: the composed models' encoders, fusion and
  widths; `inputs`: modality → batch field): head "decoder" generates the `answer` field with a captioner's
  `decoder` block, "classifier" classifies `answer_id` over the dataset's answer set."""
  if head == "decoder":
    return (ml_collections.ConfigDict(dict(name="captioner", **fused, decoder=dict(decoder))),
            ml_collections.ConfigDict(dict(name="generation", inputs=dict(inputs), target="answer")))
  return (ml_collections.ConfigDict(dict(name="classifier", **fused)),
          ml_collections.ConfigDict(dict(name="classification", inputs=dict(inputs), label="answer_id",
                                         unimodal_loss_weight=0.0)))


def optim(*, lr: float, warmup_steps: int, weight_decay: float, **overrides: Any) -> ml_collections.ConfigDict:
  """The `config.optim` block: AdamW with linear warmup, cosine decay to `end_lr_factor`·lr, and gradient
  clipping at `grad_clip_norm` (0 or None: none)."""
  config = dict(lr=lr, warmup_steps=warmup_steps, weight_decay=weight_decay, b1=0.9, b2=0.98,
                end_lr_factor=0.0, grad_clip_norm=1.0)
  config.update(overrides)
  return ml_collections.ConfigDict(config)


def decode() -> ml_collections.ConfigDict:
  """The `config.decode` block of text-generation tasks (see mmjax.decoding).

  method: "greedy", "beam" or "sample"; max_len: tokens to generate (0: the target field's
  length); length_penalty: GNMT's alpha for beam search; top_k: 0 samples from the whole
  vocabulary; kv_cache: False recomputes every position per token (a reference, slow);
  seed: the sampling rng.
  """
  return ml_collections.ConfigDict(dict(method="greedy", max_len=0, beam_size=4, length_penalty=0.6,
                                        temperature=1.0, top_k=0, kv_cache=True, seed=0))


def compute_settings() -> dict[str, str]:
  """The `config.model` keys of how a model computes, not what: `dtype` of activations and matmuls
  ("bfloat16": mixed precision, with softmax, norms' statistics and losses kept in float32), the
  float32 `param_dtype` of the weights and optimizer, and the `remat` policy of every Transformer
  block (mmjax.nn.REMAT_POLICIES: "none", "full", "dots", "dots_no_batch")."""
  return dict(dtype="float32", param_dtype="float32", remat="none")


def run(*, total_steps: int, batch_size: int, eval_batch_size: int, log_every_steps: int = 50,
        checkpoint_every_steps: int = 500) -> ml_collections.ConfigDict:
  """Top-level run settings shared by every experiment (seed, steps, batch, mesh, logging, fine-tuning)."""
  return ml_collections.ConfigDict(dict(
      seed=0,
      total_steps=total_steps,
      batch_size=batch_size,  # Global, over every process and device.
      # Micro-batches per batch: the same gradient at 1/M of the activation memory (mmjax.tasks.accumulation).
      grad_accum_steps=1,
      eval_batch_size=eval_batch_size,
      log_every_steps=log_every_steps,
      checkpoint_every_steps=checkpoint_every_steps,
      keep_checkpoints=2,
      # Device mesh: −1 is the rest of the devices. E.g. {"data": 2, "fsdp": 2, "model": 2} on 8.
      mesh=ml_collections.ConfigDict({"data": -1, "fsdp": 1, "model": 1}),
      sharding_rules=TRANSFORMER_SHARDING_RULES,
      # Fine-tuning: a workdir whose newest checkpoint initialises the towers both models share
      # (used only when this workdir has no checkpoint of its own), and the towers to freeze ("image,text").
      init_from="",
      freeze="",
      resume_safe_keys=RESUME_SAFE_KEYS,
  ))


def finish(config: ml_collections.ConfigDict, arg: ml_collections.ConfigDict,
           smoke_model: Mapping[str, Any] | None = None) -> ml_collections.ConfigDict:
  """The last step of every get_config: with `arg.smoke`, the run shrunk by SMOKE_RUN (every periodic eval
  every SMOKE_EVAL_EVERY steps) and the model by `smoke_model` (flattened keys, e.g. {"model.embed_dim": 64});
  `arg.steps` > 0 sets total_steps; then the config is locked (a mistyped key is an error)."""
  if arg.get("smoke"):
    config.update_from_flattened_dict({**SMOKE_RUN, **(smoke_model or {})})
    for evaluator in config.evals.values():
      if evaluator.every_steps:  # 0: at the end only.
        evaluator.every_steps = SMOKE_EVAL_EVERY
  if arg.get("steps"):
    config.total_steps = arg.steps
  config.lock()
  return config
