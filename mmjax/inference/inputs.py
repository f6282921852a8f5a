"""The images and texts a Predictor is given: checked before anything runs, then loaded row by row."""
from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from PIL import Image as PILImage

from mmjax import errors
from mmjax.data import photos

ImageInput = str | os.PathLike | np.ndarray  # A file path, or a uint8 [H, W, 3] RGB photo.


def check_images(images: Sequence[ImageInput]) -> list[ImageInput]:
  """`images` as a list, after an InputError naming the first that is neither an image file PIL can open nor a
  uint8 [H, W, 3] photo. Files are opened, not decoded, so a long list is checked fast, before anything runs."""
  if isinstance(images, (str, os.PathLike)) or (isinstance(images, np.ndarray) and images.ndim != 4):
    raise errors.InputError("images must be a list of image file paths or uint8 [H, W, 3] photos; got one "
                            f"{type(images).__name__}: wrap it in a list.")
  images = list(images)
  if not images:
    raise errors.InputError("No images given.")
  for index, image in enumerate(images):
    if isinstance(image, (str, os.PathLike)):
      path = os.fspath(image)
      if not os.path.isfile(path):
        raise errors.InputError(f"Image file {path} does not exist.")
      try:
        with PILImage.open(path):
          pass
      except Exception as e:  # noqa: BLE001 — whatever PIL raises, the file is no image it can read.
        raise errors.InputError(f"{path} is not an image file ({type(e).__name__}: {e}).") from e
    else:
      photo = np.asarray(image)
      if photo.dtype != np.uint8 or photo.ndim != 3 or photo.shape[-1] != 3:
        raise errors.InputError(f"images[{index}] must be an image file path or a uint8 [H, W, 3] RGB photo; got "
                                f"{photo.dtype}{list(photo.shape)}.")
  return images


def load(image: ImageInput) -> np.ndarray:
  """uint8 [H, W, 3] of a checked image: a file decoded upright (mmjax.data.photos.decode), or the photo."""
  if not isinstance(image, (str, os.PathLike)):
    return np.asarray(image)
  with open(image, "rb") as f:
    encoded = f.read()
  try:
    return photos.decode(encoded)
  except Exception as e:  # noqa: BLE001 — e.g. a truncated file whose header opened.
    raise errors.InputError(f"{os.fspath(image)} cannot be decoded as an image ({type(e).__name__}: {e}).") from e


def check_texts(texts: Sequence[str], what: str) -> list[str]:
  """`texts` as a list, after an InputError if it is not a non-empty list of strings (`what` names it)."""
  if isinstance(texts, str) or not all(isinstance(text, str) for text in texts):
    raise errors.InputError(f"{what} must be a list of strings; got {texts!r:.80}.")
  if not texts:
    raise errors.InputError(f"No {what} given.")
  return list(texts)
