"""The sentiment corpus: its lexicon-based sentences, the builder's determinism, held-out speakers, sarcasm."""
import numpy as np
import pytest

from mmjax import errors
from mmjax.data import sentiment, speech
from mmjax.data.sentiment import sources

pytestmark = pytest.mark.xdist_group("sentiment")  # One worker: the small dataset is generated once.


@pytest.fixture(scope="module")
def builder(sentiment_data_dir) -> sentiment.Sentiment:
  return sentiment.Sentiment(config="small", data_dir=sentiment_data_dir)


@pytest.fixture(scope="module")
def records(builder) -> dict[str, list[dict]]:
  return {split: [source[i] for i in range(len(source))] for split in ("train", "test")
          for source in [builder.as_data_source(split)]}


def test_valence_is_the_mean_lexicon_valence_of_the_words():
  lexicon = sentiment.load_lexicon()
  # vader_lexicon.txt, vaderSentiment 3.3.2: great 3.1, dull -1.7, boring -1.3; "film", "the", "was" unlisted.
  assert (lexicon["great"], lexicon["dull"], lexicon["boring"]) == (3.1, -1.7, -1.3)
  assert sentiment.text_valence("what a great film", lexicon) == 3.1
  assert sentiment.text_valence("the film was dull and boring", lexicon) == pytest.approx(-1.5)
  assert sentiment.text_valence("the film was long", lexicon) == 0.0
  sentiment.check_vocabulary(lexicon)  # Every polar word listed with its sign, no other word listed.
  with pytest.raises(errors.InputError, match=r"neutral words it scores \['long'\]"):
    sentiment.check_vocabulary({**lexicon, "long": 0.5})


def test_records_are_the_generator_s_output_and_generation_repeats(builder, records):
  config = builder.builder_config
  for split, index in (("train", 0), ("train", 57), ("test", 5)):
    attitude, voice = sentiment.plan_example(config, split, index)
    clip = speech.speak(attitude.text, voice, sentiment.SAMPLE_RATE, max_samples=sentiment.CLIP_SAMPLES)
    example = sentiment.generate_example(config, split, index, attitude, voice, clip)
    again = sentiment.generate_example(config, split, index, *sentiment.plan_example(config, split, index), clip)
    record = records[split][index]
    for key, value in example.items():
      stored = record[key].decode() if isinstance(record[key], bytes) else record[key]
      np.testing.assert_array_equal(stored, value, err_msg=f"{split}[{index}].{key}")
      np.testing.assert_array_equal(again[key], value)


def test_splits_sizes_fields_and_held_out_speakers(builder, records):
  metadata = builder.info.metadata
  assert metadata["label_names"] == ["negative", "neutral", "positive"]
  assert metadata["subsets"] == ["sincere", "sarcastic"] and metadata["sample_rate"] == 8000
  assert {split: len(rows) for split, rows in records.items()} == {"train": 192, "test": 96}
  voices = {split: {row["voice"].decode() for row in rows} for split, rows in records.items()}
  assert voices["train"] <= set(sentiment.TRAIN_VOICES) and voices["test"] <= set(sentiment.TEST_VOICES)
  assert not set(sentiment.TRAIN_VOICES) & set(sentiment.TEST_VOICES) and len(voices["test"]) >= 3
  # A speaker's face is fixed by the voice, so test faces are unseen too.
  assert len({sentiment.face_identity(v) for v in (*sentiment.TRAIN_VOICES, *sentiment.TEST_VOICES)}) == 15
  row = records["train"][0]
  assert row["image"].shape == (32, 32, 1) and row["image"].dtype == np.uint8
  assert row["audio"].shape == (sentiment.CLIP_SAMPLES,) and row["audio"].dtype == np.int16
  assert set(builder.info.metadata["vocab"]) >= set(row["text"].decode().split())


def test_sarcastic_words_contradict_the_label_and_voice_and_face_follow_it(records):
  rows = records["train"] + records["test"]
  label = np.array([r["label"] for r in rows])
  subset = np.array([r["subset"] for r in rows])
  valence = np.array([r["text_valence"] for r in rows])
  score = np.array([r["score"] for r in rows])
  polarity = label - 1
  sarcastic, sincere = subset == 1, subset == 0
  assert 0.1 < sarcastic.mean() < 0.3 and set(np.unique(label)) == {0, 1, 2}
  assert np.all(polarity[sarcastic] != 0)
  # Sincere: the words' valence has the label's sign (0 for neutral); sarcastic: the opposite sign.
  np.testing.assert_array_equal(np.sign(valence[sincere]), polarity[sincere])
  np.testing.assert_array_equal(np.sign(valence[sarcastic]), -polarity[sarcastic])
  # The score follows the attitude: 0.75 · valence, negated when sarcastic, within −3..3.
  np.testing.assert_allclose(score, np.where(sarcastic, -1, 1) * sentiment.SCORE_SCALE * valence, rtol=1e-6)
  assert np.all(np.abs(score) <= 3) and np.all(np.sign(score) == polarity)
  # Voice: higher-pitched and faster the more positive the attitude, sarcastic or not.
  pitch, speed = (np.array([r[k] for r in rows], float) for k in ("pitch", "speed"))
  for values in (pitch, speed):
    assert np.corrcoef(values, score)[0, 1] > 0.5 and np.corrcoef(values[sarcastic], valence[sarcastic])[0, 1] < -0.5


def test_the_face_smiles_with_a_positive_score_and_frowns_with_a_negative_one():
  identity = sentiment.face_identity("m1")
  def face(score):
    return sentiment.render_face(score, identity, np.random.default_rng(0), mouth_per_score=0.035, mouth_jitter=0.0,
                                 brow_per_score=0.15, brow_jitter=0.0, noise_std=0.0)[..., 0].astype(float)
  # With the head fixed (same rng), only mouth and brows move. The mouth's middle stays at one height; its
  # corners (columns ≈ 16 ± 4 here) rise ≈ 1.5 pixels for a smile and fall as much for a frown.
  def corner_row(image):
    return np.mean([17 + np.argmin(image[17:28, column]) for column in (12, 13, 20, 21)])
  assert corner_row(face(-2.0)) - corner_row(face(2.0)) > 2
  assert corner_row(face(0.0)) == pytest.approx((corner_row(face(-2.0)) + corner_row(face(2.0))) / 2, abs=1)
  assert np.abs(face(2.0) - face(-2.0)).max() > 50


def test_a_missing_lexicon_package_says_how_to_install_it(monkeypatch):
  monkeypatch.setattr(sources.importlib.util, "find_spec", lambda name: None)
  with pytest.raises(errors.UserError, match=r"pip install vadersentiment==3\.3\.2"):
    sources.lexicon_path()
