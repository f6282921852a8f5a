"""mmjax.data.photos: decoding upright without copies, crops of PIL images and of arrays, table normalisation."""
import io

import numpy as np
import pytest
from PIL import Image, ImageOps

from mmjax.data import photos


def _pixels(height: int, width: int) -> np.ndarray:
  return np.random.default_rng(height * width).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize("orientation", [1, 6, 3])
def test_decode_turns_a_photo_upright_by_its_exif_orientation(orientation):
  pixels = _pixels(6, 10)
  exif = Image.Exif()
  exif[0x0112] = orientation
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, format="PNG", exif=exif.tobytes())
  upright = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(buffer.getvalue()))))
  assert upright.shape == ((10, 6, 3) if orientation == 6 else (6, 10, 3))
  np.testing.assert_array_equal(photos.decode(buffer.getvalue()), upright)
  np.testing.assert_array_equal(upright, np.rot90(pixels, {1: 0, 6: -1, 3: 2}[orientation]))


def test_crops_of_a_pil_image_equal_those_of_its_array():
  pixels = _pixels(30, 41)
  image = Image.fromarray(pixels)
  for seed in range(5):
    np.testing.assert_array_equal(
        photos.random_resized_crop(image, 16, np.random.default_rng(seed), scale=(0.35, 1.0)),
        photos.random_resized_crop(pixels, 16, np.random.default_rng(seed), scale=(0.35, 1.0)))
  np.testing.assert_array_equal(photos.center_crop(image, 16), photos.center_crop(pixels, 16))
  with pytest.raises(ValueError, match="must be an RGB image"):
    photos.center_crop(image.convert("L"), 16)


@pytest.mark.parametrize("mean,std", [((127.5,) * 3, (127.5,) * 3),
                                      ((123.675, 116.28, 103.53), (58.395, 57.12, 57.375))])
def test_pixel_normalizer_is_normalize_bit_for_bit(mean, std):
  every_level = np.stack(np.meshgrid(*[np.arange(256, dtype=np.uint8)] * 3, indexing="ij"), -1)[::5, ::3]
  normalized = photos.PixelNormalizer(mean, std)(every_level)
  expected = photos.normalize(every_level, mean, std)
  assert normalized.dtype == expected.dtype == np.float32 and np.array_equal(normalized, expected)
