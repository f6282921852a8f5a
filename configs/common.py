"""Shared config blocks and the `arg` parser used by every experiment config.

A config file exposes `get_config(arg: str | None)` where `arg` is a short
comma-separated string such as `"smoke,loss=sigmoid"`; `parse_arg` turns it into
typed values (the type of each default decides how the string is parsed).
"""
from __future__ import annotations

import os
from typing import Any

import ml_collections

from mmjax import errors

DEFAULT_DATA_DIR = os.environ.get(
    "MMJAX_DATA_DIR", os.path.join(os.path.expanduser("~"), ".cache", "mmjax", "tensorflow_datasets"))


def parse_arg(arg: str | None, **defaults: Any) -> ml_collections.ConfigDict:
  """Parses `"a=1,b=x,flag"` against typed defaults.

  A bare name sets a boolean default to True. Unknown names are an error that
  lists the known ones, so `smoke,fusoin=x` fails loudly instead of being ignored.
  """
  result = ml_collections.ConfigDict(dict(defaults))
  for item in filter(None, (part.strip() for part in (arg or "").split(","))):
    name, has_value, value = item.partition("=")
    if name not in defaults:
      raise errors.ConfigError(f"Unknown config arg {name!r} in {arg!r}; known args: {sorted(defaults)}.")
    default = defaults[name]
    if not has_value:
      if not isinstance(default, bool):
        raise errors.ConfigError(f"Config arg {name!r} needs a value, e.g. {name}={default!r}.")
      result[name] = True
    elif isinstance(default, bool):
      if value.lower() not in ("true", "false", "1", "0"):
        raise errors.ConfigError(f"Config arg {name!r} is a boolean; got {value!r}.")
      result[name] = value.lower() in ("true", "1")
    else:
      try:
        result[name] = type(default)(value) if default is not None else value
      except ValueError as e:
        raise errors.ConfigError(f"Config arg {name!r} expects {type(default).__name__}; got {value!r}.") from e
  return result


def shapes_data_config(variant: str = "default", data_dir: str = DEFAULT_DATA_DIR,
                       text_len: int = 24, question_len: int = 14, answer_len: int = 2,
                       worker_count: int = 0, hard_negatives: bool = False) -> ml_collections.ConfigDict:
  """The `config.data` block for the offline Shapes dataset.

  `variant` is the tfds builder config: "default" (the full dataset) or "small" (tests, smoke runs).
  `text_len`, `question_len` and `answer_len` are the token lengths (eos included) of the caption,
  the VQA question and the VQA answer.
  `hard_negatives` adds a `negative_text` field to training batches, which the contrastive task
  uses as extra negatives (see `mmjax.data.shapes.hard_negative_caption`).
  """
  return ml_collections.ConfigDict(dict(
      name="shapes",
      variant=variant,
      data_dir=data_dir,
      text_len=text_len,
      question_len=question_len,
      answer_len=answer_len,
      worker_count=worker_count,
      hard_negatives=hard_negatives,
  ))


def av_digits_data_config(variant: str = "redundant", data_dir: str = DEFAULT_DATA_DIR, text_len: int = 16,
                          worker_count: int = 0) -> ml_collections.ConfigDict:
  """The `config.data` block for the offline AV-Digits dataset (mmjax.data.av_digits).

  `variant` is the tfds builder config: "redundant" or "synergy", or their "_small" versions
  (tests, smoke runs). `text_len` is the number word's length in characters, eos included.
  """
  return ml_collections.ConfigDict(dict(name="av_digits", variant=variant, data_dir=data_dir, text_len=text_len,
                                        worker_count=worker_count))


def optim_config(lr: float = 1e-3, warmup_steps: int = 100, weight_decay: float = 1e-4,
                 **overrides: Any) -> ml_collections.ConfigDict:
  """The `config.optim` block: AdamW with linear warmup, cosine decay and gradient clipping."""
  config = dict(lr=lr, warmup_steps=warmup_steps, weight_decay=weight_decay, b1=0.9, b2=0.98,
                end_lr_factor=0.0, grad_clip_norm=1.0)
  config.update(overrides)
  return ml_collections.ConfigDict(config)


def decode_config(**overrides: Any) -> ml_collections.ConfigDict:
  """The `config.decode` block of text-generation tasks (see mmjax.decoding).

  method: "greedy", "beam" or "sample"; max_len: tokens to generate (0: the target field's
  length); length_penalty: GNMT's alpha for beam search; top_k: 0 samples from the whole
  vocabulary; kv_cache: False recomputes every position per token (a reference, slow);
  seed: the sampling rng.
  """
  config = dict(method="greedy", max_len=0, beam_size=4, length_penalty=0.6, temperature=1.0, top_k=0,
                kv_cache=True, seed=0)
  config.update(overrides)
  return ml_collections.ConfigDict(config)


def compute_settings(dtype: str = "float32", remat: str = "none") -> dict[str, str]:
  """The `config.model` keys of how a model computes, not what: `dtype` of activations and matmuls
  ("bfloat16": mixed precision, with softmax, norms' statistics and losses kept in float32), the
  float32 `param_dtype` of the weights and optimizer, and the `remat` policy of every Transformer
  block (mmjax.nn.transformer.REMAT_POLICIES: "none", "full", "dots", "dots_no_batch")."""
  return dict(dtype=dtype, param_dtype="float32", remat=remat)


# Logical axis → mesh axes, for the Transformer families (two_tower, captioner, fusion_classifier:
# every weight is named with these axes). The batch is split over `data` and `fsdp`; weights'
# `embed` dimension over `fsdp` (ZeRO-3: gathered just before use); attention heads, the MLP's
# hidden units and the vocabulary over `model` (Megatron-style tensor parallelism: each model
# shard computes its heads and hidden units, and one all-reduce per block sums them). A mesh
# axis is used once per array: activations [batch, length, embed] are split over the batch only.
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


def run_config(**overrides: Any) -> ml_collections.ConfigDict:
  """Top-level run settings shared by every experiment (seed, steps, mesh, logging)."""
  config = ml_collections.ConfigDict(dict(
      seed=0,
      total_steps=1000,
      batch_size=256,
      # Micro-batches per batch: the same gradient at 1/M of the activation memory (mmjax.accumulation).
      grad_accum_steps=1,
      eval_batch_size=512,
      log_every_steps=50,
      checkpoint_every_steps=500,
      keep_checkpoints=2,
      # Device mesh: −1 is the rest of the devices. E.g. {"data": 2, "fsdp": 2, "model": 2} on 8.
      mesh=ml_collections.ConfigDict({"data": -1, "fsdp": 1, "model": 1}),
      sharding_rules=TRANSFORMER_SHARDING_RULES,
      # Fine-tuning: a workdir whose newest checkpoint initialises the towers both models share
      # (used only when this workdir has no checkpoint of its own), and the towers to freeze.
      init_from="",
      freeze="",
  ))
  config.update(overrides)
  return config


def smoke_run_settings(config: ml_collections.ConfigDict) -> None:
  """Shrinks a config's run to a smoke test's: 60 steps at batch 64, logging every 10 steps,
  checkpoints and evals every 30. Configs set `config.evals` and `config.optim` before calling it."""
  config.update(total_steps=60, batch_size=64, eval_batch_size=128, log_every_steps=10,
                checkpoint_every_steps=30)
  config.optim.warmup_steps = 10
  for evaluator in config.evals.values():
    evaluator.every_steps = 30
