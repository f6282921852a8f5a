"""Modality reliance: the shared ablations, predict_over with several predict functions, and every evaluator's
reliance metrics on fake models whose dependence on each field is known by construction (numpy only)."""
import ml_collections
import numpy as np
import pytest

from mmjax import data as mmdata
from mmjax import errors
from mmjax.data import WordTokenizer
from mmjax.evaluators import (CaptioningEvaluator, ClassificationEvaluator, RetrievalEvaluator, SplitEvaluator,
                              VqaEvaluator, caption_metrics)
from mmjax.evaluators import reliance
from mmjax.evaluators.common import Prepared, predict_over, process_batches

BATCH_SIZE = 5  # Never divides the splits below: the last batch is padded.


def _batch(count: int = 8, valid: int = 6) -> dict[str, np.ndarray]:
  return {"audio": np.arange(count, dtype=float)[:, None] * np.ones((1, 3)),
          "text": np.arange(count)[:, None] + np.ones((count, 2), int), "valid": np.arange(count) < valid}


def _apply(variant, batch):
  """The batch a predict_over variant's function would see (identity to_device)."""
  return variant.prepare(batch) if isinstance(variant, Prepared) else batch


def test_zeroed_and_shuffled_touch_only_their_field_and_valid_rows():
  batch = _batch()
  variants = reliance.ablated(lambda b: b, ("audio",), "test")
  assert list(variants) == ["clean", "zeroed/audio", "shuffled/audio"]
  out = _apply(variants["zeroed/audio"], batch)
  assert not out["audio"].any() and out["text"] is batch["text"]
  out = _apply(variants["shuffled/audio"], batch)
  np.testing.assert_array_equal(out["audio"][6:], batch["audio"][6:])  # Padding rows stay put.
  assert sorted(out["audio"][:6, 0]) == list(range(6)) and (out["audio"][:6, 0] != np.arange(6)).any()
  np.testing.assert_array_equal(out["text"], batch["text"])
  np.testing.assert_array_equal(batch["audio"][:, 0], np.arange(8))  # The input batch is not modified.


def test_shuffles_are_seeded_per_field_whatever_the_other_fields():
  def permutations(fields, field, batches=3):
    shuffle = reliance.ablated(lambda b: b, fields, "test")[f"shuffled/{field}"]
    return [_apply(shuffle, _batch(30, 30))[field][:, 0] for _ in range(batches)]

  first = permutations(("audio", "text"), "text")
  assert all((a == b).all() for a, b in zip(first, permutations(("text",), "text")))  # Reruns agree.
  assert not (first[0] == first[1]).all()  # Each batch is permuted afresh.
  assert not (first[0] - 1 == permutations(("audio",), "audio")[0]).all()  # Fields draw their own.


def test_a_field_the_batches_lack_names_the_config_key():
  shuffle = reliance.ablated(lambda b: b, ("smell",), "probe")["shuffled/smell"]
  with pytest.raises(errors.ConfigError, match=r"config\.evals\.probe\.reliance names 'smell'.*\['audio', 'text'"):
    _apply(shuffle, _batch())


def test_report_names_and_drops():
  scores = {"clean": {"accuracy": 0.9}, "zeroed/image": {"accuracy": 0.25}, "shuffled/image": {"accuracy": 0.5}}
  assert reliance.report(scores) == {
      "accuracy": 0.9, "zeroed/image/accuracy": 0.25, "zeroed/image/accuracy_drop": pytest.approx(0.65),
      "shuffled/image/accuracy": 0.5, "shuffled/image/accuracy_drop": pytest.approx(0.4)}


def test_predict_over_a_dict_equals_separate_calls():
  rows = {"x": np.arange(26, dtype=np.float32).reshape(13, 2), "y": np.arange(13)}
  batches = process_batches(rows, BATCH_SIZE)
  double, total = (lambda b: b["x"] * 2), (lambda b: b["x"].sum(1))
  negated = Prepared(lambda b: {**b, "x": -b["x"]}, double)
  to_device = dict
  outputs, fields = predict_over(batches, {"double": double, "total": total, "negated": negated}, to_device)
  for name, predict in (("double", double), ("total", total)):
    alone, alone_fields = predict_over(batches, predict, to_device)
    np.testing.assert_array_equal(outputs[name], alone)
    assert alone_fields.keys() == fields.keys() == {"x", "y"}
  np.testing.assert_array_equal(outputs["double"], rows["x"] * 2)
  np.testing.assert_array_equal(outputs["negated"], -rows["x"] * 2)
  np.testing.assert_array_equal(fields["y"], rows["y"])  # The clean rows, padding dropped.
  _, kept = predict_over(batches, {"double": double}, to_device, keep=("y",))
  assert kept.keys() == {"y"}


@pytest.fixture
def split(monkeypatch):
  """Sets the rows of the eval split every evaluator built by `build` reads (this process's batches of them)."""
  def use(rows):
    monkeypatch.setattr(mmdata, "eval_batches", lambda data_config, split, batch_size: process_batches(rows,
                                                                                                         batch_size))
  return use


def build(evaluator, predict_fns, **eval_config):
  config = ml_collections.ConfigDict(dict(name="probe", split="test", **eval_config))
  return evaluator("test", config, data_config=ml_collections.ConfigDict(), predict_fns=predict_fns,
                   batch_size=BATCH_SIZE, to_device=dict)


def test_reliance_only_where_an_evaluator_reports_it():
  with pytest.raises(errors.ConfigError, match=r"config\.evals\.test\.reliance=\('image',\): SplitEvaluator"):
    build(SplitEvaluator, {}, reliance=("image",))
  with pytest.raises(errors.ConfigError, match=r"config\.evals\.test\.reliance='image' must be a list"):
    build(SplitEvaluator, {}, reliance="image")
  assert build(SplitEvaluator, {}).reliance == ()


def test_classification_reliance_drops_only_for_the_field_read(split, monkeypatch):
  labels = np.arange(12) % 3
  split({"audio": labels[:, None].astype(np.float32), "image": np.random.default_rng(0).normal(size=(12, 2)),
         "label": labels})
  monkeypatch.setattr(mmdata, "label_names", lambda data_config: {"label": ["zero", "one", "two"]})
  def classify(params, batch):  # Reads the audio only.
    return batch["audio"][:, 0].astype(int)

  evaluator = build(ClassificationEvaluator, {"classify": classify}, label="label", reliance=("image", "audio"))
  metrics = evaluator.run(None)
  assert metrics["accuracy"] == metrics["macro_f1"] == 1.0 and metrics["num_examples"] == 12
  for kind in ("zeroed", "shuffled"):
    assert metrics[f"{kind}/image/accuracy_drop"] == metrics[f"{kind}/image/macro_f1_drop"] == 0.0
  # Silence is class 0 for this model: right on the 4 examples of class 0 only.
  assert metrics["zeroed/audio/accuracy"] == pytest.approx(1 / 3)
  assert metrics["zeroed/audio/accuracy_drop"] == pytest.approx(2 / 3)
  assert metrics["shuffled/audio/accuracy"] < 1.0
  assert metrics["shuffled/audio/accuracy_drop"] == pytest.approx(1.0 - metrics["shuffled/audio/accuracy"])
  assert evaluator.run(None) == metrics  # Seeded: a rerun agrees.


N = 6


SCENES = np.array([0, 1, 2, 3, 4, 4])  # The last two examples are one scene with one caption.


def _retrieval_rows():
  """Image i is the one-hot e_s of its scene s, text i the tokens [4 + s, eos]."""
  return {"image": np.eye(N, dtype=np.float32)[SCENES], "text": np.stack([4 + SCENES, np.full(N, 3)], axis=1)}


def _embed_text(params, text):
  return (text[:, :1] - 4 == np.arange(N)).astype(np.float32)  # All-padding text: the zero vector.


def test_retrieval_reliance_ablates_one_tower_against_the_other_clean(split):
  split(_retrieval_rows())
  evaluator = build(RetrievalEvaluator, {"embed_image": lambda params, image: image, "embed_text": _embed_text},
                    reliance=("image", "text"))
  metrics = evaluator.run(None)
  assert all(metrics[f"{d}_r{k}"] == 1.0 for d in ("i2t", "t2i") for k in (1, 5, 10))
  for field in ("image", "text"):
    # Zero embeddings tie every candidate, ranked in index order: query i finds its caption at the rank of the
    # first example of its scene: 1 for query 0, 2..5 for the others. Were the captions that count as a match
    # taken from the zeroed texts (all one caption), every query would hit at once.
    for direction in ("i2t", "t2i"):
      assert metrics[f"zeroed/{field}/{direction}_r1"] == pytest.approx(1 / N)
      assert metrics[f"zeroed/{field}/{direction}_r5"] == 1.0
      assert metrics[f"zeroed/{field}/{direction}_r1_drop"] == pytest.approx(1 - 1 / N)
      assert metrics[f"shuffled/{field}/{direction}_r1"] < 1.0
      assert metrics[f"shuffled/{field}/{direction}_r1_drop"] == pytest.approx(
          1 - metrics[f"shuffled/{field}/{direction}_r1"])
  assert "zeroed/image/chance_r1" not in metrics and metrics["chance_r1"] == pytest.approx((4 / N + 2 * 2 / N) / N)


def test_retrieval_reliance_of_an_image_tower_that_ignores_the_image_is_zero(split):
  split(_retrieval_rows())
  def constant(params, image):
    return np.ones((len(image), N), np.float32) / np.sqrt(N)

  metrics = build(RetrievalEvaluator, {"embed_image": constant, "embed_text": _embed_text},
                  reliance=("image",)).run(None)
  drops = {name: value for name, value in metrics.items() if name.endswith("_drop")}
  assert len(drops) == 2 * 6 and not any(drops.values())
  with pytest.raises(errors.ConfigError, match=r"config\.evals\.test\.reliance names \['question'\]"):
    build(RetrievalEvaluator, {}, reliance=("question",))


VOCAB = ["no", "yes", "red", "blue", "circle", "is", "what"]
TOKENIZER = WordTokenizer(VOCAB)


def _tokens(texts, length=4):
  return np.array([(TOKENIZER.encode(text) + [TOKENIZER.eos_id] + [0] * length)[:length] for text in texts])


@pytest.mark.parametrize("reads_image", [True, False])
def test_captioning_reliance_catches_a_model_that_ignores_the_image(split, monkeypatch, reads_image):
  colours = np.array([1, 2, 1, 2, 2, 1, 1])  # red, blue
  captions = [f"{['', 'red', 'blue'][c]} circle" for c in colours]
  split({"image": colours[:, None].astype(np.float32), "text": _tokens(captions)})
  monkeypatch.setattr(mmdata, "get_tokenizer", lambda data_config: TOKENIZER)

  def generate(params, batch):
    """The caption of the image's colour ("circle" for a black image), or always "red circle"."""
    colour = batch["image"][:, 0].astype(int) if reads_image else np.ones(len(batch["image"]), int)
    return _tokens([f"{['', 'red', 'blue'][c]} circle" for c in colour])

  metrics = build(CaptioningEvaluator, {"generate": generate}, reliance=("image",)).run(None)
  names = ("bleu1", "bleu2", "bleu3", "bleu4", "cider_d", "exact_match")
  assert {name for name in metrics if name.startswith("zeroed/")} == {
      f"zeroed/image/{name}{suffix}" for name in names for suffix in ("", "_drop")}
  if reads_image:
    assert metrics["exact_match"] == metrics["token_accuracy"] == 1.0
    expected = caption_metrics(["circle"] * len(captions), [[caption] for caption in captions])
    assert all(metrics[f"zeroed/image/{name}"] == pytest.approx(expected[name]) for name in names)
    assert metrics["zeroed/image/exact_match_drop"] == 1.0 and metrics["shuffled/image/cider_d_drop"] > 0
  else:
    assert not any(value for name, value in metrics.items() if name.endswith("_drop"))


@pytest.mark.parametrize("reads", ["image", "question"])
def test_vqa_reliance_gives_the_blind_figure_per_type(split, monkeypatch, reads):
  answers = ["no", "yes", "yes", "no", "yes", "red", "blue", "blue", "red"]
  answer_ids = np.array([VOCAB.index(answer) for answer in answers])
  types = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1])
  # Both fields carry the answer (id + 1, so that zero means none); the model reads one of them.
  split({"image": (answer_ids + 1)[:, None].astype(np.float32), "question": (answer_ids + 1)[:, None],
         "answer": _tokens(answers, 2), "answer_id": answer_ids, "question_type": types})
  monkeypatch.setattr(mmdata, "get_tokenizer", lambda data_config: TOKENIZER)
  monkeypatch.setattr(mmdata, "label_names",
                      lambda data_config: {"answer_id": VOCAB[:4], "question_type": ["exists", "colour"]})
  monkeypatch.setattr(mmdata, "field_values", lambda data_config, split, fields: {
      "answer": ["no", "no", "yes", "red"], "question_type": [0, 0, 0, 1]})
  def classify(params, batch):  # Nothing to read (0) gives answer 0, "no".
    return np.maximum(batch[reads][:, 0].astype(int) - 1, 0)

  evaluator = build(VqaEvaluator, {"classify": classify}, reliance=("image", "question"))
  metrics = evaluator.run(None)
  assert metrics["accuracy"] == metrics["accuracy/exists"] == metrics["accuracy/colour"] == 1.0
  ignored = "question" if reads == "image" else "image"
  assert not any(value for name, value in metrics.items() if name.startswith(f"zeroed/{ignored}/")
                 and name.endswith("_drop"))
  # Without what it reads, the model says "no": right on the 2 of 5 "exists" questions answered "no".
  assert metrics[f"zeroed/{reads}/accuracy/exists"] == pytest.approx(2 / 5)
  assert metrics[f"zeroed/{reads}/accuracy/colour"] == 0.0
  assert metrics[f"zeroed/{reads}/accuracy_drop"] == pytest.approx(1 - 2 / 9)
  # Next to the blind figure, the majority baseline ("no", "red"), which no ablation touches.
  assert metrics["majority_accuracy/exists"] == pytest.approx(2 / 5) and metrics["majority_accuracy/colour"] == 0.5
  assert not any(name.startswith(("zeroed/majority", "shuffled/majority")) for name in metrics)
  with pytest.raises(errors.ConfigError, match=r"config\.evals\.test\.reliance names 'audio'"):
    build(VqaEvaluator, {"classify": classify}, reliance=("audio",)).run(None)
