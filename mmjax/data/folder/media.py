"""Reading a folder dataset's image and audio files once, when it is built: checked, and made small enough to
decode every step.

Images are decoded in full (a truncated JPEG fails here, not mid-training) and stored as their original bytes,
or re-encoded when their shorter side is larger than `short_side` (then resized to it: a 12-megapixel photo
would cost ~100 ms to decode at every step for a 224-pixel crop). Audio is decoded by libsndfile (WAV, FLAC, OGG,
MP3), mixed to mono and resampled to the dataset's rate with a polyphase filter.
"""
from __future__ import annotations

import io
import math

import numpy as np
import soundfile
from PIL import Image, ImageOps, UnidentifiedImageError

from mmjax.data import photos


class MediaError(Exception):
  """A file that cannot be used; its message is the problem, for the manifest row that names the file."""


def load_image(path: str, short_side: int) -> bytes:
  """The bytes to store for image file `path`: as they are, or resized so the shorter side is `short_side`
  (0: never) and re-encoded (JPEG at quality 95, PNG if the image has transparency)."""
  try:
    with open(path, "rb") as f:
      encoded = f.read()
  except FileNotFoundError:
    raise MediaError(f"image {path} does not exist") from None
  except OSError as e:
    raise MediaError(f"image {path} cannot be read ({e.strerror})") from None
  try:
    with Image.open(io.BytesIO(encoded)) as image:
      image.load()  # Decodes every pixel: a truncated or corrupt file fails now.
      if not short_side or min(image.size) <= short_side:
        return encoded
      image = ImageOps.exif_transpose(image)
      scale = short_side / min(image.size)
      resized = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             photos.RESAMPLING["bicubic"])
  except UnidentifiedImageError:
    raise MediaError(f"image {path} is not in an image format PIL reads") from None
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
    raise MediaError(f"image {path} is not an image PIL can decode ({e})") from None
  out = io.BytesIO()
  if resized.mode in ("RGBA", "LA", "P"):
    resized.save(out, format="PNG")
  else:
    resized.convert("RGB").save(out, format="JPEG", quality=95)
  return out.getvalue()


def load_audio(path: str, sample_rate: int) -> np.ndarray:
  """float32 [T] in [-1, 1] at `sample_rate`: audio file `path` decoded, its channels averaged, resampled."""
  try:
    samples, rate = soundfile.read(path, dtype="float32", always_2d=True)
  except FileNotFoundError:
    raise MediaError(f"audio {path} does not exist") from None
  except (soundfile.LibsndfileError, RuntimeError, OSError) as e:
    raise MediaError(f"audio {path} is not an audio file libsndfile can decode ({e})") from None
  if not len(samples):
    raise MediaError(f"audio {path} has no samples")
  mono = samples.mean(axis=1)
  if rate != sample_rate:
    from scipy import signal  # Here, not at the top: it takes ~1 s to import, in every process that reads data.

    divisor = math.gcd(rate, sample_rate)
    mono = signal.resample_poly(mono, sample_rate // divisor, rate // divisor)
  return np.clip(mono, -1.0, 1.0).astype(np.float32)
