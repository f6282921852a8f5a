"""Spoken Shapes: deterministic generation, held-out voices, the transcripts and scenes Shapes gives, the noise
knob."""
import numpy as np
import pytest
import tensorflow_datasets as tfds
from tensorflow_datasets.proto import tf_example_pb2

from mmjax import errors
from mmjax.data import shapes, speech, spoken_shapes

SPLITS = ("train", "test", "heldout")
TINY = dict(num_train=6, num_test=3, num_heldout=3)


def _build(cls, data_dir, **fields):
  config = spoken_shapes.SpokenShapesConfig(name="tiny", description="A test.", **{**TINY, **fields})
  builder = cls(config=config, data_dir=str(data_dir))
  builder.download_and_prepare(file_format="array_record")
  return builder


def _raw_records(builder, split: str) -> list[bytes]:
  """The split's records as stored, their features in a fixed order (see tests/data/test_av_digits.py)."""
  source = builder.as_data_source(split, deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES)
  return [tf_example_pb2.Example.FromString(source[i]).SerializeToString(deterministic=True)
          for i in range(len(source))]


@pytest.fixture(scope="module")
def speech_builder(tmp_path_factory):
  return _build(spoken_shapes.SpokenShapes, tmp_path_factory.mktemp("spoken"), digits_fraction=0.5)


def _records(builder, split: str) -> list[dict]:
  source = builder.as_data_source(split)
  return [source[i] for i in range(len(source))]


def test_generation_is_deterministic(speech_builder, tmp_path):
  again = _build(spoken_shapes.SpokenShapes, tmp_path, digits_fraction=0.5)
  for split in SPLITS:
    first = _raw_records(speech_builder, split)
    assert len(first) == TINY[f"num_{split}"] and first == _raw_records(again, split), split


def test_test_voices_are_never_heard_in_train_and_transcripts_are_shapes_captions_or_number_words(speech_builder):
  metadata = speech_builder.info.metadata
  assert set(metadata["train_voices"]).isdisjoint(metadata["test_voices"])
  sources = set()
  for split in SPLITS:
    voices = metadata["train_voices"] if split == "train" else metadata["test_voices"]
    for index, record in enumerate(_records(speech_builder, split)):
      assert record["voice"].decode() in voices
      assert 150 <= record["speed"] <= 210 and 30 <= record["pitch"] <= 70
      assert record["audio"].dtype == np.int16 and 0.5 * 16000 < len(record["audio"]) <= metadata["max_samples"]
      text, source = record["text"].decode(), spoken_shapes.SOURCES[record["source"]]
      sources.add(source)
      if source == "caption":  # The Shapes dataset's caption of the same split and index.
        assert text == shapes.generate_example(split, index, image_size=48)["caption"]
      else:
        assert 2 <= len(text.split()) <= 5 and set(text.split()) <= set(spoken_shapes.DIGIT_WORDS)
      assert set(text) <= set(metadata["chars"])
  assert sources == {"caption", "digits"}


def test_spoken_vqa_speaks_the_shapes_question_of_the_same_scene(tmp_path):
  builder = _build(spoken_shapes.SpokenVqa, tmp_path, num_train=2, num_test=1, num_heldout=1)
  record = builder.as_data_source("heldout")[0]
  scene = shapes.generate_example("heldout", 0, image_size=48)
  assert record["question"].decode() == scene["question"] and record["answer"].decode() == scene["answer"]
  assert record["question_type"] == scene["question_type"] and record["image"].shape == (48, 48, 3)
  assert record["voice"].decode() in spoken_shapes.SPLIT_VOICES["heldout"]


def test_noise_sits_snr_db_below_the_speech_and_none_is_silence():
  clip = (speech.TARGET_RMS * np.sqrt(2) * np.sin(np.arange(8000) * 0.3)).astype(np.float32)
  clean = spoken_shapes.stored_clip(clip, np.random.default_rng(0), max_samples=16000, snr_db=None)
  lead = int(np.flatnonzero(clean)[0])
  assert lead > 0 and 8000 < len(clean) <= 16000 and not clean[:lead].any()  # Silence around the speech.
  for snr_db in (0.0, 10.0):
    noisy = spoken_shapes.stored_clip(clip, np.random.default_rng(0), max_samples=16000, snr_db=snr_db).astype(float)
    speech_part = noisy[lead:lead + 8000]
    noise_rms = np.sqrt(np.mean(np.concatenate([noisy[:lead], noisy[lead + 8000:]]) ** 2))
    expected = 10 ** (-snr_db / 20) * speech.TARGET_RMS / np.sqrt(speech.TARGET_RMS**2 * (1 + 10 ** (-snr_db / 10)))
    np.testing.assert_allclose(noise_rms / np.sqrt(np.mean(speech_part**2)), expected, rtol=0.1)
  with pytest.raises(errors.UserError, match="longer than the dataset's max_seconds=0.25"):
    spoken_shapes.stored_clip(clip, np.random.default_rng(0), max_samples=4000, snr_db=None)


def test_audio_is_padded_to_the_window_in_unit_range():
  audio = spoken_shapes.pad_audio([np.array([32767, -32768], np.int16), np.array([16384], np.int16)], 4)
  np.testing.assert_allclose(audio, [[32767 / 32768, -1.0, 0.0, 0.0], [0.5, 0.0, 0.0, 0.0]])
