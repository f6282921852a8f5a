"""The Predictor: a run's model and params, and the prediction methods its task supports."""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec as P
from tqdm import auto as tqdm

from mmjax import data as mmdata
from mmjax import errors, evaluators, stored_config
from mmjax.data.tokenizer import tokenize_to_length
from mmjax.evaluators.common import predict_over, process_batches
from mmjax.inference import params as params_lib
from mmjax.inference.inputs import ImageInput, check_images, check_texts, load
from mmjax.trainer import checkpoint
from mmjax.trainer import run as run_lib

Row = dict[str, np.ndarray]
DEFAULT_TEMPLATES = ("a photo of a {}.",)
# The methods of a task with image and text embeddings (a two-tower model).
_EMBEDDING_METHODS = ("score", "classify", "embed_images", "embed_texts")


def _gather_strings(local: list[str]) -> list[str]:
  """Every process's `local` strings, process 0's first: process_allgather takes arrays of one shape, so each
  process sends its strings' utf-8 bytes padded to the longest."""
  blob = np.frombuffer("\0".join(local).encode(), np.uint8)
  sizes = np.asarray(multihost_utils.process_allgather(np.asarray([len(blob), len(local)], np.int64))).reshape(-1, 2)
  padded = np.pad(blob, (0, int(sizes[:, 0].max()) - len(blob)))
  every = np.asarray(multihost_utils.process_allgather(padded)).reshape(len(sizes), -1)
  return [text for (size, count), row in zip(sizes, every) if count
          for text in bytes(row[:size]).decode().split("\0")]


class Predictor:
  """A run's model with its params, for prediction. Build it with `from_workdir`, `from_checkpoint` or
  `from_config`; `methods()` lists what its task can do. `show_progress` draws a progress bar over batches
  (process 0)."""

  def __init__(self, run: run_lib.Run, params: Any, step: int | None = None):
    self.run, self.params, self.step = run, params, step
    self.config = run.config
    self.batch_size = self.config.eval_batch_size // jax.process_count()
    self.show_progress = False
    self._spec = mmdata.element_spec(self.config.data)
    self._predict_fns = run.task.predict_fns()
    self._jitted: dict[str, Callable] = {}
    self._photo_input: Callable[[np.ndarray], np.ndarray] | None = None

  @classmethod
  def from_workdir(cls, workdir: str, overrides: Mapping[str, Any] | None = None,
                   devices: Sequence[jax.Device] | None = None) -> Predictor:
    """The newest good checkpoint of `workdir` with the config it was trained with (its config.json), changed by
    the flattened `overrides` (e.g. {"decode.method": "beam"}). Reads the workdir, never writes it."""
    config = stored_config.read(workdir)
    config.lock()
    for key, value in (overrides or {}).items():
      try:
        config.update_from_flattened_dict({key: value})
      except (KeyError, TypeError, ValueError) as e:
        reason = e.args[0] if isinstance(e, KeyError) and e.args else e
        raise errors.ConfigError(f"Cannot override {key}={value!r} in the config of {workdir}: {reason}") from e
    return cls.from_checkpoint(config, workdir, devices)

  @classmethod
  def from_checkpoint(cls, config: ml_collections.ConfigDict, workdir: str,
                      devices: Sequence[jax.Device] | None = None) -> Predictor:
    """`config` (e.g. a workdir's stored config with overrides) with the params of the newest good checkpoint of
    `workdir`, restored read-only."""
    directory = os.path.join(os.path.abspath(os.path.expanduser(workdir)), "checkpoints")
    if not checkpoint.has_checkpoint(directory):
      raise errors.CheckpointError(f"no checkpoint to predict with in {workdir}; train first with "
                                   f"python -m experiments.train --workdir={workdir} --config=...")
    photo_config = params_lib.with_image_tower(config)
    run = run_lib.build_run(photo_config, devices)
    with run.context():
      if photo_config is config:
        state, step = run_lib.restore(run, directory)
        return cls(run, state.params, step)
      # The checkpoint has no image tower (its model read features): the tower comes from its pretrained one.
      saved, step = checkpoint.restore_newest(directory)
      return cls(run, params_lib.with_pretrained_image_tower(run, saved["params"], directory), step)

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict, devices: Sequence[jax.Device] | None = None) -> Predictor:
    """A fresh model of `config` with every `pretrained` tower it names imported (mmjax.trainer.finetune), e.g.
    configs/fashion_lit.py's EfficientNet-Lite0 and MiniLM: `embed_images(..., projected=False)` is then the
    pretrained image tower's output. Towers without a checkpoint keep their random init."""
    run = run_lib.build_run(params_lib.with_image_tower(config), devices)
    with run.context():
      return cls(run, params_lib.fresh_params(run))

  def methods(self) -> list[str]:
    """The prediction methods this run's task supports."""
    inputs = set(self._inputs())
    found = []
    if "generate" in self._predict_fns and inputs == {"image"}:
      found.append("caption")
    if {"generate", "classify"} & set(self._predict_fns) and inputs == {"image", "text"}:
      found.append("answer")
    if "classify" in self._predict_fns and inputs == {"image"}:
      found.append("label")
    if {"embed_image", "embed_text"} <= set(self._predict_fns):
      found += _EMBEDDING_METHODS
    return found

  def caption(self, images: Sequence[ImageInput]) -> list[str]:
    """The decoded caption of each image (decoding as config.decode says)."""
    self._require("caption")
    images = check_images(images)
    field = self._inputs()["image"]
    return self._decode(self._predict("generate", len(images),
                                      lambda i: {field: self._image(images[i]), **self._blanks()}))

  def answer(self, images: Sequence[ImageInput], questions: Sequence[str]) -> list[str]:
    """The answer to questions[i] about images[i]: generated by the decoder, or the name of the class a
    classifier picks (mmjax.data.label_names of the task's label, e.g. Shapes' answer_id)."""
    self._require("answer")
    images, questions = check_images(images), check_texts(questions, "questions")
    if len(images) != len(questions):
      raise errors.InputError(f"answer() takes one question per image; got {len(images)} images and "
                              f"{len(questions)} questions.")
    image_field, question_field = self._inputs()["image"], self._inputs()["text"]
    tokens = self._tokens(questions, question_field)
    generate = "generate" in self._predict_fns
    outputs = self._predict("generate" if generate else "classify", len(images), lambda i: {
        image_field: self._image(images[i]), question_field: tokens[i], **self._blanks()})
    if generate:
      return self._decode(outputs)
    names = mmdata.label_names(self.config.data)[self.run.task.label]
    return [names[int(i)] for i in outputs]

  def label(self, images: Sequence[ImageInput]) -> list[str]:
    """The class a trained image classifier gives each image (the names of the task's label field)."""
    self._require("label")
    images = check_images(images)
    field = self._inputs()["image"]
    outputs = self._predict("classify", len(images), lambda i: {field: self._image(images[i]), **self._blanks()})
    names = mmdata.label_names(self.config.data)[self.run.task.label]
    return [names[int(i)] for i in outputs]

  def embed_images(self, images: Sequence[ImageInput], projected: bool = True) -> np.ndarray:
    """f32[N, D]: the unit joint-space embeddings (`projected`), or the image tower's pooled features before the
    projection (not normalised; what a linear probe reads)."""
    self._require("embed_images")
    images = check_images(images)
    return self._predict("embed_image" if projected else "image_features", len(images),
                         lambda i: {"image": self._image(images[i])}, field="image")

  def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
    """f32[N, D]: the unit joint-space embeddings of the texts."""
    self._require("embed_texts")
    return self._embed_tokens(self._tokens(check_texts(texts, "texts"), "text"))

  def score(self, images: Sequence[ImageInput], texts: Sequence[str]) -> np.ndarray:
    """f32[N_images, N_texts]: the cosine similarity of each image's and each text's embedding."""
    self._require("score")
    return self.embed_images(images) @ self.embed_texts(texts).T

  def classify(self, images: Sequence[ImageInput], class_names: Sequence[str],
               templates: Sequence[str] = DEFAULT_TEMPLATES) -> np.ndarray:
    """f32[N, C] zero-shot probabilities of the classes: each class embedded as the zero_shot_classification
    evaluator does (the mean of its `templates` filled with its name, re-normalised), then a softmax over classes
    of the cosine similarities times the model's learned inverse temperature exp(logit_scale) (×100, CLIP's
    final value, for a model without one). The argmax is the evaluator's prediction."""
    self._require("classify")
    class_names = check_texts(class_names, "class names")
    if isinstance(templates, str) or not templates or any("{}" not in template for template in templates):
      raise errors.InputError(f"templates={templates!r} must be a non-empty list of strings with a {{}} for the "
                              "class name.")
    prompts = [[template.format(name) for template in templates] for name in class_names]
    classes = evaluators.class_embeddings(self._embed_tokens, self.run.tokenizer, prompts, self._length("text"))
    scale = np.exp(np.asarray(self.params["logit_scale"])) if "logit_scale" in self.params else 100.0
    logits = scale * self.embed_images(images) @ classes.T
    logits = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (logits / logits.sum(axis=1, keepdims=True)).astype(np.float32)

  def embed_split(self, split: str, modality: str = "image",
                  projected: bool = True) -> tuple[np.ndarray, dict[str, list[str]]]:
    """(f32[N, D], strings) for every example of the dataset's `split` in record order: the embeddings of its
    images or of its texts (`modality`, "image" or "text"; `projected` as in embed_images), and the split's
    string fields of the same examples (e.g. caption, id), read as evaluation reads the split
    (mmjax.data.eval_batches, each process its shard)."""
    errors.check_choice(modality, ("image", "text"), "modality")
    self._require("embed_images" if modality == "image" else "embed_texts")
    name = {"text": "embed_text", "image": "embed_image" if projected else "image_features"}[modality]
    strings: dict[str, list[str]] = {}

    def numbered(batches: Iterable[Row]) -> Iterator[Row]:
      """Each batch with its rows' place in this process's shard (shards are contiguous, in process order)."""
      start = 0
      for batch in batches:
        for key, value in batch.items():
          if value.dtype == object:
            strings.setdefault(key, []).extend(value[batch["valid"]])
        yield {**batch, "process": np.full(len(batch["valid"]), jax.process_index(), np.int32),
               "shard_row": np.arange(start, start + len(batch["valid"]), dtype=np.int32)}
        start += len(batch["valid"])

    shard = -(-mmdata.num_examples(self.config.data, split) // jax.process_count())
    batches = numbered(mmdata.eval_batches(self.config.data, split, batch_size=self.batch_size))
    outputs, fields = self._run(name, self._progress(batches, -(-shard // self.batch_size)), modality,
                                keep=("process", "shard_row"))
    order = np.lexsort((fields["shard_row"], fields["process"]))
    return outputs[order], {key: _gather_strings(values) for key, values in strings.items()}

  def predict_fn(self, name: str) -> Callable:
    """The task's predict function `name` (e.g. "embed_image", "generate"), jitted once per Predictor with its
    outputs replicated, as evaluation jits it: (params, inputs) → outputs, called in `self.run.context()`; e.g. to
    run over batches of your own (for "generate" and "classify", the inputs are `self.run.task_inputs(batch)`)."""
    if name not in self._jitted:
      self._jitted[name] = jax.jit(self._predict_fns[name], out_shardings=NamedSharding(self.run.mesh, P()))
    return self._jitted[name]

  def _require(self, method: str) -> None:
    if method not in self.methods():
      raise errors.ConfigError(f"This run's task ({self.config.task.name!r}, model {self.config.model.name!r}) "
                               f"cannot {method}; it supports: {', '.join(self.methods()) or 'no prediction'}.")

  def _inputs(self) -> dict[str, str]:
    """{modality: batch field} the task feeds its model ({} for the two-tower model's fixed fields)."""
    inputs = getattr(self.run.task, "inputs", None)
    return dict(inputs.mapping) if inputs is not None else {}

  def _image(self, image: ImageInput) -> np.ndarray:
    if self._photo_input is None:
      self._photo_input = mmdata.photo_input(self.config.data)
    return self._photo_input(load(image))

  def _length(self, field: str) -> int:
    return self._spec[field].shape[-1]

  def _tokens(self, texts: list[str], field: str) -> np.ndarray:
    """int32 [N, L] ids of `texts` at the length of the dataset's `field` (config.data.<field>_len)."""
    return np.stack([tokenize_to_length(self.run.tokenizer, text, self._length(field), f"{field}_len")
                     for text in texts])

  def _blanks(self) -> Row:
    """Zeros for the task's batch fields that feed no model input (a generation target, whose length is all
    decoding reads; a class label), so a batch has the fields evaluation gives the predict function."""
    inputs = set(self._inputs().values())
    return {key: np.zeros(self._spec[key].shape, self._spec[key].dtype) for key in self.run.task.batch_keys
            if key not in inputs and key in self._spec}

  def _decode(self, ids: np.ndarray) -> list[str]:
    return [self.run.tokenizer.decode(row) for row in ids]

  def _embed_tokens(self, tokens: np.ndarray) -> np.ndarray:
    """int tokens [N, L] → the text embeddings [N, D] (class_embeddings' `embed_text`)."""
    return self._predict("embed_text", len(tokens), lambda i: {"text": tokens[i]}, field="text")

  def _predict(self, name: str, count: int, row: Callable[[int], Row], field: str | None = None) -> np.ndarray:
    """The outputs of predict function `name` for rows 0..count-1, where row(i) is row i's inputs: batches of
    the eval batch size (the last padded), of which each process prepares only the rows it feeds."""
    def batches() -> Iterator[Row]:
      for batch in process_batches({"index": np.arange(count)}, self.batch_size):
        rows = [row(int(i)) for i in batch["index"][batch["valid"]]] or [row(0)]
        rows += [{key: np.zeros_like(value) for key, value in rows[0].items()}] * (self.batch_size - len(rows))
        yield {**{key: np.stack([r[key] for r in rows]) for key in rows[0]}, "valid": batch["valid"]}
    return self._run(name, self._progress(batches(), -(-count // (self.batch_size * jax.process_count()))), field)[0]

  def _run(self, name: str, batches: Iterable[Row], field: str | None,
           keep: Sequence[str] = ()) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """predict_over with the predict function `name` applied to the batch's task inputs or to its `field`."""
    fn = self.predict_fn(name)
    with self.run.context():
      outputs, fields = predict_over(
          batches, lambda b: fn(self.params, self.run.task_inputs(b) if field is None else b[field]),
          self.run.to_device, keep=keep)
    return outputs.astype(np.float32) if outputs.dtype.kind == "f" else outputs, fields

  def _progress(self, batches: Iterable[Row], total: int) -> Iterable[Row]:
    """`batches` (`total` of them) under a progress bar if `show_progress` (process 0 draws it)."""
    return tqdm.tqdm(batches, total=total, unit="batch", desc="predict", dynamic_ncols=True,
                     disable=not self.show_progress or jax.process_index() != 0)
