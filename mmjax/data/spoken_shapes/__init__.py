"""Spoken Shapes: the Shapes captions and questions, and strings of number words, spoken by espeak-ng.

Two datasets, each a deterministic tfds builder (array_record, generated offline in a minute or two):
- `spoken_shapes` (speech to text): a Shapes caption ("a small red square left of a large blue circle") or,
  in a quarter of the examples, 2–5 number words ("seven one four"), as 16 kHz audio and its transcript;
- `spoken_vqa`: a Shapes scene, its VQA question spoken (and written), and the one-word answer.
Their tokenizer is a character vocabulary (CHARS: what CTC spells); `spoken_shapes_words`, the same data under
another registry name, tokenizes transcripts into words (WORDS), for a decoder that writes a word a step.

Each utterance gets a voice of its split (AV-Digits' espeak-ng variants: `test` and `heldout` are spoken by
voices `train` never has), a speed and a pitch drawn per utterance, up to 0.25 s of silence around it and white
noise `snr_db` below the speech (a builder-config knob). Clips are stored as int16 of their own length, at most
`max_seconds`; preprocessing pads them to that window. `heldout` holds Shapes' held-out colour–shape pairs:
word pairs never heard together in training.

Generation is a pure function of the builder config: each example's draws come from numpy Generators seeded
by (task, split, index), the scenes from Shapes' own (split, index) seeds, and espeak-ng gives identical audio
for identical arguments (for one espeak-ng version).

The package: `sources` (texts, voices, the stored clip), `builder` (the tfds builders), `preprocess`
(records → model inputs).
"""
from collections.abc import Mapping
from typing import Any

from mmjax.data.spoken_shapes.builder import SpokenShapes, SpokenShapesConfig, SpokenVqa
from mmjax.data.spoken_shapes.preprocess import PreprocessSpokenShapes, pad_audio
from mmjax.data.spoken_shapes.sources import (
    CHARS, DIGIT_WORDS, SAMPLE_RATE, SOURCES, SPLIT_VOICES, WORDS, digit_string, draw_voice, stored_clip)


def label_names(metadata: Mapping[str, Any]) -> dict[str, list[str]]:
  """The integer label fields' value names: the VQA answers and question types, and the speech task's sources."""
  return {"answer_id": list(metadata["answers"]), "question_type": list(metadata["question_types"]),
          "source": list(metadata["sources"])}


__all__ = ["CHARS", "DIGIT_WORDS", "SAMPLE_RATE", "SOURCES", "SPLIT_VOICES", "WORDS", "PreprocessSpokenShapes",
           "SpokenShapes", "SpokenShapesConfig", "SpokenVqa", "digit_string", "draw_voice", "label_names",
           "pad_audio", "stored_clip"]
