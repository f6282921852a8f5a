"""Hugging Face BERT checkpoints (a model.safetensors in a sentence-transformers or HF folder) → BertEncoder.

`import_params` maps the weights onto the encoder's parameter tree; `architecture` and `sequence_length` read the
folder's configs, so an mmjax config can be checked against (or filled from) the checkpoint it imports.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Any

import flax
import numpy as np
from safetensors.numpy import load_file

from mmjax import errors
from mmjax.pretrained import files
from mmjax.pretrained.fit import fit

# Buffers and heads a checkpoint may hold that BertEncoder has no use for: the position-id buffer and the
# [CLS] pooler (sentence-transformers pools the token outputs itself).
_IGNORED = re.compile(r"embeddings\.position_ids|pooler\..*")
_EMBEDDINGS = {
    "embeddings.word_embeddings.weight": "embed/embedding/embedding",
    "embeddings.position_embeddings.weight": "pos_embed/pos_embedding",
    "embeddings.token_type_embeddings.weight": "type_embedding",
    "embeddings.LayerNorm.weight": "embed_norm/scale",
    "embeddings.LayerNorm.bias": "embed_norm/bias",
}
_LAYER = re.compile(r"encoder\.layer\.(\d+)\.(.+)\.(weight|bias)")
# Inside encoder.layer.N: HF module → (mmjax module under encoder/block_N, kind of parameter).
_LAYER_MODULES = {
    "attention.self.query": ("attn/query", "heads_in"),
    "attention.self.key": ("attn/key", "heads_in"),
    "attention.self.value": ("attn/value", "heads_in"),
    "attention.output.dense": ("attn/out", "heads_out"),
    "attention.output.LayerNorm": ("ln_attn", "norm"),
    "intermediate.dense": ("mlp/fc1", "dense"),
    "output.dense": ("mlp/fc2", "dense"),
    "output.LayerNorm": ("ln_mlp", "norm"),
}
# sentence-transformers' pooling modes (1_Pooling/config.json: pooling_mode_<mode>) → BertEncoder's `pool`.
BERT_POOLING_MODES = {"mean_tokens": "mean", "cls_token": "cls"}


def _convert(key: str, value: np.ndarray, heads: int, source: str) -> tuple[str, np.ndarray]:
  """The checkpoint's parameter `key` → (its mmjax path, value). torch's Linear weight is [out, in], flax's kernel
  [in, out]; attention projections keep their heads as an axis ([D, H, Dh] in, [H, Dh, D] out). A ConfigError
  for a key that is not one of BERT's (another architecture's checkpoint)."""
  if key in _EMBEDDINGS:
    return _EMBEDDINGS[key], value
  layer = _LAYER.fullmatch(key)
  if not layer or layer.group(2) not in _LAYER_MODULES:
    raise errors.ConfigError(f"{source} holds {key!r}, which is not a BERT weight; import a BERT checkpoint "
                             "(absolute position embeddings, model_type 'bert').")
  module, kind = _LAYER_MODULES[layer.group(2)]
  path, param = f"encoder/block_{layer.group(1)}/{module}", layer.group(3)
  if kind == "norm":
    return f"{path}/{'scale' if param == 'weight' else 'bias'}", value
  if kind.startswith("heads") and value.shape[0] % heads:
    raise errors.ConfigError(f"{source}: {key} has {value.shape[0]} features, not divisible by the configured "
                             f"num_heads={heads}; configure the module the checkpoint was trained as.")
  if param == "bias":
    return f"{path}/bias", (value.reshape(heads, -1) if kind == "heads_in" else value)
  kernel = value.T
  if kind == "heads_in":
    kernel = kernel.reshape(kernel.shape[0], heads, -1)
  elif kind == "heads_out":
    kernel = kernel.reshape(heads, -1, kernel.shape[1])
  return f"{path}/kernel", kernel


def import_params(path: str, expected: Mapping[str, Any]) -> dict[str, Any]:
  """A BERT model.safetensors (`path`: the file or its folder) → the params of a BertEncoder, checked against
  its freshly initialised `expected` params (arrays or shapes, boxed or not). Keys may carry a "bert." prefix
  (BertFor* checkpoints)."""
  file = files.find(path, ("model.safetensors",), "BERT checkpoint")
  expected = flax.linen.unbox(expected)
  shapes = flax.traverse_util.flatten_dict(flax.core.unfreeze(expected), sep="/")
  query = shapes.get("encoder/block_0/attn/query/kernel")
  heads = np.shape(query)[1] if query is not None else 1  # No attention to fill: fit names what is missing.
  mapped = {}
  for key, value in load_file(file).items():
    key = key.removeprefix("bert.")
    if not _IGNORED.fullmatch(key):
      name, value = _convert(key, value, heads, file)
      mapped[name] = value
  return fit(expected, flax.traverse_util.unflatten_dict(mapped, sep="/"), source=file)


def _read_json(folder: str, name: str) -> dict[str, Any] | None:
  path = os.path.join(folder, name)
  if not os.path.isfile(path):
    return None
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def _folder(path: str) -> str:
  return os.path.dirname(path) if os.path.isfile(path) else path


def architecture(path: str) -> dict[str, Any]:
  """The `bert` text-encoder config block of the checkpoint at `path` (its folder, or a file in it), from the
  folder's config.json and, for a sentence-transformers model, its pooling and Normalize modules. A plain HF BERT
  folder pools its [CLS] token unnormalised, the HF convention."""
  folder = _folder(path)
  config = _read_json(folder, "config.json")
  if config is None:
    raise errors.ConfigError(f"{folder} has no config.json; point the BERT importer at the checkpoint's folder.")
  if config.get("model_type", "bert") != "bert" or config.get("position_embedding_type", "absolute") != "absolute":
    raise errors.ConfigError(f"{folder}/config.json describes a {config.get('model_type')} model with "
                             f"{config.get('position_embedding_type')} positions; BertEncoder imports BERT with "
                             "absolute positions only.")
  if config.get("hidden_act", "gelu") != "gelu":
    raise errors.ConfigError(f"{folder}/config.json: hidden_act={config['hidden_act']!r}; BertEncoder has BERT's "
                             "exact GELU ('gelu') only.")
  modules = {m["type"].rpartition(".")[2]: m["path"] for m in _read_json(folder, "modules.json") or []}
  pool, normalize = "cls", False
  if "Pooling" in modules:
    pooling = _read_json(os.path.join(folder, modules["Pooling"]), "config.json") or {}
    modes = [k.removeprefix("pooling_mode_") for k, v in pooling.items() if k.startswith("pooling_mode_") and v]
    if len(modes) != 1 or modes[0] not in BERT_POOLING_MODES:
      raise errors.ConfigError(f"{folder}/{modules['Pooling']}/config.json pools by {modes}; BertEncoder pools by "
                               f"one of {sorted(BERT_POOLING_MODES)}.")
    pool, normalize = BERT_POOLING_MODES[modes[0]], "Normalize" in modules
  return {"name": "bert", "vocab_size": config["vocab_size"], "width": config["hidden_size"],
          "depth": config["num_hidden_layers"], "num_heads": config["num_attention_heads"],
          "mlp_dim": config["intermediate_size"], "max_len": config["max_position_embeddings"],
          "type_vocab_size": config["type_vocab_size"], "epsilon": config["layer_norm_eps"], "pool": pool,
          "normalize": normalize}


def sequence_length(path: str) -> int:
  """The number of tokens the checkpoint's model reads (longer texts are truncated): sentence-transformers'
  max_seq_length if the folder has one, else the position table's length. A data config's text_len defaults
  to it."""
  folder = _folder(path)
  sentence_config = _read_json(folder, "sentence_bert_config.json") or {}
  if "max_seq_length" in sentence_config:
    return int(sentence_config["max_seq_length"])
  return int(architecture(folder)["max_len"])
