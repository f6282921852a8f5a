"""mmjax.inference.Predictor on Shapes test images given as PNG files: what it predicts equals what the evaluators
compute from the dataset pipeline for the same images, on 1 device or 8, each function compiled once; and a
precomputed-features config (fashion_lit) predicts with its pretrained towers imported."""
import os

import chex
import jax
import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from configs import fashion_lit, shapes_vqa
from mmjax import data as mmdata
from mmjax import errors, evaluators, pretrained, tasks
from mmjax.evaluators.common import predict_over
from mmjax.inference import Predictor
from mmjax.inference import params as inference_params
from mmjax.trainer.checkpoint import Checkpointer
from tests.data.test_fashion_mnist import write_idx_files
from tests.helpers import smoke_config

COUNT = 5  # Test images, in one padded batch.
# The tests that read a trained smoke run share the worker that trains it (tests/trainer/test_train_tasks.py).
shared_runs = pytest.mark.xdist_group("clip_smoke")


def write_test_pngs(data_dir: str, folder, count: int = COUNT) -> tuple[list[str], list[dict[str, str]]]:
  """The first `count` examples of the Shapes test split: their images written as the PNG files the dataset
  stores (test<i>.png in `folder`), and their caption and question."""
  builder = mmdata.prepare(smoke_config(data_dir).data)
  source = builder.as_data_source("test", decoders={"image": tfds.decode.SkipDecoding()})
  paths, texts = [], []
  for index in range(count):
    record = source[index]
    paths.append(os.path.join(folder, f"test{index}.png"))
    with open(paths[-1], "wb") as f:
      f.write(record["image"])
    texts.append({key: record[key].decode() for key in ("caption", "question")})
  return paths, texts


@pytest.fixture(scope="module")
def pngs(shapes_data_dir, tmp_path_factory):
  return write_test_pngs(shapes_data_dir, tmp_path_factory.mktemp("pngs"))


@pytest.fixture(scope="module")
def clip_predictor(clip_smoke_run):
  return Predictor.from_workdir(clip_smoke_run[0])


def reference(predictor: Predictor, name: str, eval_name: str, **eval_config):
  """(outputs of the predict function `name` over the first COUNT test examples as evaluator `eval_name` reads
  them from the dataset, the evaluator). The function is the Predictor's own, compiled once for both."""
  run, fn = predictor.run, predictor.predict_fn(name)
  evaluator = evaluators.build("test", ml_collections.ConfigDict(dict(name=eval_name, split=f"test[:{COUNT}]",
                                                                      every_steps=0, **eval_config)),
                               data_config=run.config.data, predict_fns={name: fn},
                               batch_size=predictor.batch_size, to_device=run.to_device)
  field = {"embed_image": "image", "embed_text": "text"}.get(name)
  with run.context():
    outputs, _ = predict_over(evaluator.batches(),
                              lambda b: fn(predictor.params, b[field] if field else run.task_inputs(b)), run.to_device)
  return outputs, evaluator


def _listing(folder: str) -> list[tuple[str, int, float]]:
  """(path, size, mtime) of every file under `folder`."""
  return sorted((os.path.join(root, name), os.stat(os.path.join(root, name)).st_size,
                 os.stat(os.path.join(root, name)).st_mtime) for root, _, names in os.walk(folder) for name in names)


@shared_runs
def test_score_is_the_cosine_of_the_retrieval_evaluators_embeddings_and_embed_split_reads_the_same(clip_predictor,
                                                                                                  pngs):
  paths, texts = pngs
  captions = [t["caption"] for t in texts]
  image_emb, _ = reference(clip_predictor, "embed_image", "retrieval")
  text_emb, _ = reference(clip_predictor, "embed_text", "retrieval")
  scores = clip_predictor.score(paths, captions)
  assert scores.shape == (COUNT, COUNT) and scores.dtype == np.float32
  np.testing.assert_allclose(scores, image_emb @ text_emb.T, atol=1e-5)
  # Unprojected: the image tower's features, which the projection and normalisation make the embeddings.
  projection = np.asarray(clip_predictor.params["image_proj"]["kernel"])
  projected = clip_predictor.embed_images(paths, projected=False) @ projection
  np.testing.assert_allclose(projected / np.linalg.norm(projected, axis=1, keepdims=True), image_emb, atol=1e-5)
  embeddings, strings = clip_predictor.embed_split(f"test[:{COUNT}]")
  np.testing.assert_allclose(embeddings, image_emb, atol=1e-6)
  assert strings["caption"] == captions
  text_split, _ = clip_predictor.embed_split(f"test[:{COUNT}]", modality="text")
  np.testing.assert_allclose(text_split, clip_predictor.embed_texts(captions), atol=1e-6)


@shared_runs
def test_classify_is_the_softmax_of_the_zero_shot_evaluators_class_embeddings(clip_predictor, pngs):
  paths, _ = pngs
  templates = ["a {} shape.", "a {} thing."]
  colours = mmdata.label_names(clip_predictor.config.data)["colour"]
  _, evaluator = reference(clip_predictor, "embed_text", "zero_shot_classification", label="colour",
                           templates=templates)
  with clip_predictor.run.context():
    classes = evaluators.class_embeddings(evaluator.text_embedder(clip_predictor.params),
                                          clip_predictor.run.tokenizer, evaluator.prompts,
                                          clip_predictor.config.data.text_len)
  similarity = clip_predictor.embed_images(paths) @ classes.T
  logits = np.exp(np.asarray(clip_predictor.params["logit_scale"])) * similarity
  expected = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
  probabilities = clip_predictor.classify(paths, colours, templates)
  np.testing.assert_allclose(probabilities, expected, atol=1e-5)
  np.testing.assert_array_equal(probabilities.argmax(1), similarity.argmax(1))  # The evaluator's prediction.


@shared_runs
def test_one_device_and_eight_give_the_same_embeddings_each_function_compiled_once(clip_smoke_run, clip_predictor,
                                                                                  pngs, monkeypatch):
  paths, _ = pngs
  predict_fns = tasks.ContrastiveTask.predict_fns
  monkeypatch.setattr(tasks.ContrastiveTask, "predict_fns",
                      lambda self: {k: chex.assert_max_traces(fn, n=1) for k, fn in predict_fns(self).items()})
  one = Predictor.from_workdir(clip_smoke_run[0], devices=jax.devices()[:1])
  assert one.run.mesh.size == 1 and clip_predictor.run.mesh.size == 8
  embeddings = one.embed_images(paths)
  np.testing.assert_allclose(embeddings, clip_predictor.embed_images(paths), atol=1e-5)
  # Other inputs, the same shapes: no retrace. A photo array is the same image as its file.
  photos = [np.asarray(Image.open(path).convert("RGB")) for path in paths[:2]]
  np.testing.assert_allclose(one.embed_images(photos), embeddings[:2], atol=1e-6)
  assert one.embed_texts(["a red circle"] * 3).shape == (3, embeddings.shape[1])
  one.embed_texts(["a blue square"])


@shared_runs
def test_a_run_refuses_what_its_task_cannot_do_and_bad_inputs_name_the_culprit(clip_smoke_run, clip_predictor, pngs,
                                                                               tmp_path):
  paths, _ = pngs
  with pytest.raises(errors.ConfigError, match=r"task \('contrastive', model 'two_tower'\) cannot caption; it "
                                               r"supports: score, classify, embed_images, embed_texts\.$"):
    clip_predictor.caption(paths)
  with pytest.raises(errors.ConfigError, match="cannot answer"):
    clip_predictor.answer(paths, ["what shape is it?"] * COUNT)
  missing = str(tmp_path / "missing.png")
  with pytest.raises(errors.InputError, match=f"^Image file {missing} does not exist"):
    clip_predictor.embed_images([paths[0], missing])
  (tmp_path / "notes.txt").write_text("not an image")
  with pytest.raises(errors.InputError, match=f"^{tmp_path / 'notes.txt'} is not an image file"):
    clip_predictor.score([tmp_path / "notes.txt"], ["a red circle"])
  truncated = tmp_path / "truncated.png"  # Its header opens; its pixels do not decode.
  truncated.write_bytes(open(paths[0], "rb").read()[:100])
  with pytest.raises(errors.InputError, match=f"^{truncated} cannot be decoded as an image"):
    clip_predictor.embed_images([truncated])
  with pytest.raises(errors.InputError, match=r"images\[1\] must be an image file path or a uint8 \[H, W, 3\]"):
    clip_predictor.embed_images([paths[0], np.zeros((8, 8, 3), np.float32)])
  with pytest.raises(errors.InputError, match="wrap it in a list"):
    clip_predictor.embed_images(paths[0])
  with pytest.raises(errors.InputError, match="text_len=18"):
    clip_predictor.embed_texts(["a " * 30])
  with pytest.raises(errors.ConfigError, match=r"Cannot override decode.method='beam' in the config of .*decode"):
    Predictor.from_workdir(clip_smoke_run[0], {"decode.method": "beam"})
  with pytest.raises(errors.CheckpointError, match="no checkpoint to evaluate in"):
    Predictor.from_workdir(str(tmp_path))


@shared_runs
def test_caption_of_a_png_is_the_captioning_evaluators_decoded_text(caption_smoke_run, pngs):
  paths, _ = pngs
  workdir = caption_smoke_run[1]
  before = _listing(workdir)
  predictor = Predictor.from_workdir(workdir)
  assert predictor.methods() == ["caption"] and predictor.step == 40
  generated, evaluator = reference(predictor, "generate", "captioning")
  expected = [evaluator.tokenizer.decode(ids) for ids in generated]
  assert predictor.caption(paths) == expected and all(expected)
  assert _listing(workdir) == before  # Read only.


@shared_runs
def test_answer_of_a_png_is_the_vqa_evaluators_answer_generated_or_classified(vqa_smoke_run, shapes_data_dir, pngs):
  paths, texts = pngs
  questions = [t["question"] for t in texts]
  generator = Predictor.from_workdir(vqa_smoke_run[1], {"decode.max_len": 2})
  generated, evaluator = reference(generator, "generate", "vqa")
  assert generator.answer(paths, questions) == [evaluator.tokenizer.decode(ids) for ids in generated]
  # The classifier head (untrained: the answers are arbitrary, the same either way) names the answer ids.
  classifier = Predictor.from_config(smoke_config(shapes_data_dir, shapes_vqa, "smoke,head=classifier"))
  assert classifier.methods() == ["answer"]
  classified, evaluator = reference(classifier, "classify", "vqa")
  assert classifier.answer(paths, questions) == [evaluator.answer_names[i] for i in classified]
  with pytest.raises(errors.InputError, match="one question per image; got 5 images and 1 questions"):
    classifier.answer(paths, questions[:1])


def test_a_precomputed_features_config_predicts_with_its_pretrained_towers_from_config_or_checkpoint(tmp_path):
  """configs/fashion_lit.py trains on EfficientNet-Lite0 features computed once: its Predictor has that tower in
  its model instead (a forward pass on photos costs a 2 s compile here; the clip tests run the same functions).
  From the config: both towers imported; from a checkpoint (which has no image tower): the checkpoint's params and
  the imported image tower."""
  (tmp_path / "source").mkdir()
  write_idx_files(tmp_path / "source", counts={"train": 20, "test": 10})
  config = fashion_lit.get_config("smoke")
  config.data.update(source_dir=str(tmp_path / "source"), data_dir=str(tmp_path / "data"))
  predictor = Predictor.from_config(config)
  assert predictor.config.model.image.to_dict() == fashion_lit.LITE0 and not predictor.config.data.image_features
  params = jax.device_get(predictor.params)
  for tower, module, name in (("image_encoder", "efficientnet_lite", "efficientnet-lite0"),
                              ("text_encoder", "bert", "all-MiniLM-L6-v2")):
    imported = pretrained.IMPORTERS[module](pretrained.resolve(name, "test"), params[tower])
    jax.tree.map(np.testing.assert_array_equal, params[tower], imported)

  # A checkpoint of the features model: every param but the image tower, which it has none of.
  saved = {k: v for k, v in params.items() if k != "image_encoder"}
  saved["image_proj"] = {"kernel": np.random.default_rng(0).normal(size=params["image_proj"]["kernel"].shape)
                         .astype(np.float32)}
  checkpointer = Checkpointer(str(tmp_path / "run" / "checkpoints"), max_to_keep=1)
  checkpointer.save(7, {"params": saved}, {})
  checkpointer.close()
  (tmp_path / "run" / "config.json").write_text(config.to_json())
  restored = Predictor.from_workdir(str(tmp_path / "run"))
  assert restored.step == 7
  grafted = jax.device_get(restored.params)
  jax.tree.map(np.testing.assert_array_equal, grafted, {**saved, "image_encoder": params["image_encoder"]})
  random_tower = config.copy_and_resolve_references()
  random_tower.data.image_features.pretrained = ""
  with pytest.raises(errors.ConfigError, match="image_features names no `pretrained` checkpoint"):
    Predictor.from_config(random_tower)
  saved["image_proj"]["kernel"] = saved["image_proj"]["kernel"][:, :3]
  with pytest.raises(errors.CheckpointError, match=r"does not fit this config: params\['image_proj'\]\['kernel'\] "
                                                   r"is \(1280, 3\) in it but \(1280, 256\) with this config"):
    inference_params.with_pretrained_image_tower(restored.run, saved, "the checkpoint")


def test_label_of_image_files_is_the_classifiers_class_of_the_same_folder_rows(tmp_path):
  """A folder dataset's image classifier (untrained: the check is that files and the dataset pipeline meet the
  same function): label() of the image files equals the class names of `classify` on their evaluation batch."""
  from configs import folder

  from mmjax.data.folder import write_example_folder

  write_example_folder(str(tmp_path / "digits"), count=24)
  config = folder.get_config("task=classify,smoke")
  with config.unlocked():
    config.data.path, config.data.data_dir, config.eval_batch_size = str(tmp_path / "digits"), str(tmp_path), 8
  predictor = Predictor.from_config(config)
  batch = next(mmdata.eval_batches(config.data, "test", batch_size=8))
  ids = [int(i) for i in np.asarray(predictor.predict_fn("classify")(predictor.params, predictor.run.to_device(
      predictor.run.task_inputs(batch))))[:int(batch["valid"].sum())]]
  names = mmdata.label_names(config.data)["label"]
  files = [str(tmp_path / "digits" / row_id) for row_id in batch["id"][:len(ids)]]
  assert predictor.label(files) == [names[i] for i in ids]
  with pytest.raises(errors.ConfigError, match="cannot caption; it supports: label"):
    predictor.caption(files)
