"""Bad configs and bad inputs: each gets a message naming the problem and the fix, raised before
anything is compiled or trained (the scripts print it without a traceback: tests/experiments)."""
import json

import jax
import jax.numpy as jnp
import pytest

from configs import shapes_caption, shapes_clip, shapes_vqa
from mmjax import errors, trainer
from mmjax.data import tokenizer as tokenizer_lib
from mmjax.trainer import workdir as workdir_lib
from tests.helpers import smoke_config

# (case, config overrides, error class, message regex).
BAD_CONFIGS = [
    ("negative lr", {"optim.lr": -1e-3}, errors.ConfigError, r"config.optim.lr must be positive; got -0.001"),
    ("b2 out of range", {"optim.b2": 1.5}, errors.ConfigError, r"config.optim.b2 must be in \[0, 1\); got 1.5"),
    ("warmup ≥ total steps", {"optim.warmup_steps": 100}, errors.ConfigError,
     r"warmup_steps=100 must be smaller than total_steps=60"),
    ("zero log interval", {"log_every_steps": 0}, errors.ConfigError,
     r"config.log_every_steps=0: each must be a positive integer"),
    ("image size not divisible by patch", {"model.image.variant": "Nano/7"}, errors.ConfigError,
     r"Image size 48x48 is not divisible by patch size 7"),
    ("heads not dividing width", {"model.text.num_heads": 3}, errors.ConfigError,
     r"Attention width 64 is not divisible by num_heads=3"),
    ("unknown ViT size", {"model.image.variant": "Huge/8"}, errors.ConfigError, r"ViT variant 'Huge/8'"),
    ("batch not divisible by devices", {"batch_size": 60}, errors.ConfigError,
     r"config.batch_size=60 must be a positive multiple of the data-parallel device count \(8\)"),
    ("mesh larger than the devices", {"mesh.data": 16}, errors.ConfigError, r"does not fit 8 devices"),
    ("heads not splitting over the model axis", {"mesh.data": 2, "mesh.model": 4}, errors.ConfigError,
     r"\['attn'\]\['query'\]\['kernel'\] \(64, 2, 32\): dimension 1 of size 2 does not split over the 4 "
     r"devices of mesh axis 'model'"),
    ("micro-batches not fitting the devices", {"grad_accum_steps": 16}, errors.ConfigError,
     r"config.grad_accum_steps=16 must be a positive integer that splits config.batch_size=64 into "
     r"micro-batches each a multiple of the data-parallel device count \(8\)"),
    ("unknown remat policy", {"model.remat": "some"}, errors.ConfigError,
     r"Unknown remat policy 'some' \(config.model.remat\); known: \['none', 'full', 'dots', 'dots_no_batch'\]"),
    ("unknown dtype", {"model.dtype": "float8"}, errors.ConfigError,
     r"Unknown dtype 'float8' \(config.model.dtype\); known: \['bfloat16', 'float32'\]"),
    ("unknown loss", {"task.loss": "hinge"}, errors.ConfigError,
     r"Unknown contrastive loss 'hinge' \(config.task.loss\); known: \['softmax', 'sigmoid'\]"),
    ("unknown image encoder", {"model.image.name": "resnet"}, errors.ConfigError,
     r"Unknown image encoder 'resnet'; known: \['cnn', 'efficientnet_lite', 'features', 'vit'\]"),
    ("unknown dataset variant", {"data.variant": "tiny"}, errors.ConfigError,
     r"Unknown variant 'tiny' of dataset 'shapes'; known variants: \['default', 'small'\]"),
    ("missing split", {"evals.test.split": "validation"}, errors.ConfigError,
     r"Unknown split 'validation' .* available splits: \['heldout', 'test', 'train'\]"),
    ("empty split", {"evals.test.split": "test[:0]"}, errors.InputError, r"Split 'test\[:0\]' .* has no examples"),
    ("unknown evaluator", {"evals.test.name": "bleu"}, errors.ConfigError,
     r"Unknown evaluator 'bleu' \(config.evals.test.name\); known: \['captioning', 'classification', .*'vqa', "
     r"'zero_shot', 'zero_shot_classification'\]"),
    ("negative eval interval", {"evals.test.every_steps": -1}, errors.ConfigError,
     r"config.evals.test.every_steps=-1: each must be an integer ≥ 0 \(0: evaluate at the end only\)"),
    ("zero-shot template without the attribute", {"evals.zeroshot_colour.template": "a {shape}"},
     errors.ConfigError, r"template 'a \{shape\}' has no \{colour\} placeholder"),
    ("text longer than the context", {"data.text_len": 6}, errors.InputError,
     r"has \d+ tokens; with eos it needs \d+ > text_len=6. Raise config.data.text_len"),
]


BAD_CAPTION_CONFIGS = [
    ("unknown decode method", {"decode.method": "nucleus"}, errors.ConfigError,
     r"Unknown decode method 'nucleus' \(config.decode.method\); known: \['greedy', 'beam', 'sample'\]"),
    ("a decoder on a fusion without tokens", {"model.fusion": "gated"}, errors.ConfigError,
     r"config.model.fusion='gated' yields no fused tokens .* use one of \['bottleneck', 'concat', "
     r"'cross_attention', 'mult'\]"),
    ("unknown fusion", {"model.fusion": "sum"}, errors.ConfigError, r"Unknown fusion 'sum' \(config.model.fusion\)"),
    ("task inputs not the model's modalities", {"task.inputs": {"image": "image", "text": "question"}},
     errors.ConfigError, r"config.task.inputs feeds modalities \['image', 'text'\] but the model is configured "
                         r"for \['image'\]"),
    ("beam of zero", {"decode.method": "beam", "decode.beam_size": 0}, errors.ConfigError,
     r"decode_config.beam_size must be ≥ 1; got 0"),
    ("unknown tower to freeze", {"freeze": "decoder"}, errors.ConfigError,
     r"config.freeze='decoder' names unknown towers \['decoder'\]; known: \['audio', 'image', 'text', 'video'\]"),
    ("freezing a tower the model lacks", {"freeze": "text"}, errors.ConfigError,
     r"config.freeze names \['text_encoder'\], which this model does not have"),
    ("init_from without a checkpoint", {"init_from": "/nonexistent/run"}, errors.ConfigError,
     r"config.init_from='/nonexistent/run' has no checkpoint"),
]


CASES = [(shapes_clip, *c) for c in BAD_CONFIGS] + [(shapes_caption, *c) for c in BAD_CAPTION_CONFIGS]


@pytest.mark.parametrize("module,case,overrides,error,message", CASES, ids=[c[1] for c in CASES])
def test_bad_config_fails_before_training(shapes_data_dir, tmp_path, module, case, overrides, error, message):
  del case
  config = smoke_config(shapes_data_dir, module, **overrides)
  workdir = tmp_path / "run"
  with pytest.raises(error, match=message):
    trainer.train(config, str(workdir))
  assert not workdir.exists(), "a refused run leaves nothing it made"


def test_classifier_on_where_questions_is_refused_before_training(shapes_data_dir, tmp_path):
  """Training-only "where" questions have two-word answers outside the classifier's classes: no answer_id."""
  config = smoke_config(shapes_data_dir, shapes_vqa, "smoke,head=classifier", **{
      "data.fresh_questions": True, "data.answer_len": 3, "data.question_type_weights": (1, 1, 1, 1, 1, 1)})
  with pytest.raises(errors.ConfigError, match=r"The task reads batch fields \['answer_id'\], which dataset 'shapes' "
                                               r"does not have with this config.data; .* Fix config.task or"):
    trainer.train(config, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


def test_workdir_with_another_config_names_the_changed_keys(shapes_data_dir, tmp_path):
  workdir = tmp_path / "run"
  (workdir / "checkpoints" / "12").mkdir(parents=True)
  workdir_lib.write_config(smoke_config(shapes_data_dir), str(workdir))

  changed = smoke_config(shapes_data_dir, total_steps=16, **{
      "model.embed_dim": 32, "seed": 1, "optim.lr": 1e-4, "data.worker_count": 1})
  with pytest.raises(errors.ConfigError) as raised:
    trainer.train(changed, str(workdir))
  message = str(raised.value)
  assert "model.embed_dim: 64 → 32" in message and "seed: 0 → 1" in message
  assert "data.worker_count: 0 → 1" in message, "Grain cannot restore a loader state of another worker count"
  for safe in ("total_steps", "optim.lr"):
    assert safe not in message, f"{safe} may change on resume"
  assert "Use a new --workdir" in message
  with open(workdir / "config.json") as f:
    assert json.load(f)["model"]["embed_dim"] == 64, "the stored config is left as it was"


# (case, which input, its value, message regex).
BAD_MODEL_INPUTS = [
    ("image of rank 3", "image", jnp.zeros((2, 48, 48)),
     r"ViT expects images f32\[B, H, W, 3\] scaled to \[-1, 1\]; got float32\[2, 48, 48\]"),
    ("image with 4 channels", "image", jnp.zeros((2, 48, 48, 4)), r"got float32\[2, 48, 48, 4\]"),
    ("uint8 image", "image", jnp.zeros((2, 48, 48, 3), jnp.uint8), r"got uint8\[2, 48, 48, 3\]\. Decode images"),
    ("float tokens", "text", jnp.zeros((2, 18)), r"Text encoder expects int tokens \[B, L\]; got float32\[2, 18\]"),
    ("tokens longer than the context", "text", jnp.zeros((2, 40), jnp.int32),
     r"Sequence of length 40 exceeds the position table \(18\)"),
]


@pytest.mark.parametrize("case,kind,value,message", BAD_MODEL_INPUTS, ids=[c[0] for c in BAD_MODEL_INPUTS])
def test_bad_model_input_is_named(shapes_data_dir, case, kind, value, message):
  del case
  model = trainer.build_task(smoke_config(shapes_data_dir)).model
  image, text = jnp.zeros((2, 48, 48, 3)), jnp.zeros((2, 18), jnp.int32)
  image, text = (value, text) if kind == "image" else (image, value)
  with pytest.raises(errors.InputError, match=message):
    jax.eval_shape(model.init, jax.random.PRNGKey(0), image, text)


def test_caption_longer_than_text_len_is_named():
  tokenizer = tokenizer_lib.WordTokenizer(["a", "red", "circle"])
  with pytest.raises(errors.InputError, match=r"text_len=3"):
    tokenizer_lib.tokenize_to_length(tokenizer, "a red circle", 3)
