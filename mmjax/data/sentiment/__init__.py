"""A synthetic multimodal sentiment corpus with a sarcastic subset, built on a real sentiment lexicon.

Each example is one speaker's opinion of a film, in three modalities:
- text: a sentence from a few templates whose adjectives come from VADER's lexicon (vaderSentiment's
  vader_lexicon.txt, 7,500 tokens rated −4..4 by 10 people each); its valence is the mean lexicon valence of its
  words (`text_valence`: the polar adjectives; every other word is outside the lexicon and counts 0);
- audio: the sentence spoken by espeak-ng (8 kHz, 3 s), the speaker's attitude in the prosody: higher and faster
  when positive, lower and slower when negative, with jitter (`prosody`);
- image: the speaker's face (32×32 grey), the attitude in the mouth's curve and the brows' tilt (`render_face`).

The label is the speaker's attitude: negative / neutral / positive, uniform. A polar example is *sarcastic* with
probability 0.3 (20% of all examples): its words have the opposite polarity ("what a brilliant film" said low,
slow and frowning is negative). Voice and face always show the attitude, so text alone is right on the sincere
examples and wrong on the sarcastic ones, while voice and face are noisy everywhere: a model must read all three
and learn when to distrust the words. The continuous `score` (−3..3, as CMU-MOSI's) is
0.75 · text valence (VADER's −4..4 → −3..3), negated when sarcastic, 0 when neutral; voice and face express it.
`subset` is 0 (sincere) or 1 (sarcastic), for per-subset metrics.

The test split's speakers (espeak voices, and the faces that go with them) are never met in training. Generation
is a pure function of the builder config: each example's draws come from numpy Generators seeded by
(split, index, stream), and espeak-ng gives identical audio for identical arguments (for one espeak-ng version).

The package: `sources` (lexicon, sentences, prosody, faces), `builder` (the tfds builder), `preprocess`.
"""
from mmjax.data.sentiment.builder import Sentiment, SentimentConfig, generate_example, plan_example
from mmjax.data.sentiment.preprocess import PreprocessSentiment
from mmjax.data.sentiment.sources import (
    CLIP_SAMPLES, IMAGE_SIZE, LABEL_NAMES, NEGATIVE_WORDS, NEUTRAL_WORDS, POSITIVE_WORDS, SAMPLE_RATE, SCORE_SCALE,
    SUBSETS, TEST_VOICES, TRAIN_VOICES, Attitude, check_vocabulary, face_identity, load_lexicon, render_face,
    sample_attitude, text_valence, vocabulary)

__all__ = ["CLIP_SAMPLES", "IMAGE_SIZE", "LABEL_NAMES", "NEGATIVE_WORDS", "NEUTRAL_WORDS", "POSITIVE_WORDS",
           "SAMPLE_RATE", "SCORE_SCALE", "SUBSETS", "TEST_VOICES", "TRAIN_VOICES", "Attitude", "PreprocessSentiment",
           "Sentiment", "SentimentConfig", "check_vocabulary", "face_identity", "generate_example", "load_lexicon",
           "plan_example", "render_face", "sample_attitude", "text_valence", "vocabulary"]
