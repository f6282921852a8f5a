"""The classification task (VQA over a fixed answer set): its loss, accuracy and predictions."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from mmjax import errors, tasks
from mmjax.models import Classifier

IMAGE = dict(name="vit", variant="Nano/8", width=32, num_heads=2)
TEXT = dict(name="transformer", vocab_size=24, width=32, depth=1, num_heads=2, mlp_dim=64, max_len=8)
FUSED = dict(fusion="concat", width=32, fusion_depth=1, num_heads=2, mlp_dim=64, num_classes=5)
TASK = ml_collections.ConfigDict(dict(name="classification", label="answer_id",
                                     inputs={"image": "image", "text": "question"}, unimodal_loss_weight=0.0))


def test_loss_accuracy_and_predictions_agree_with_the_logits():
  model = Classifier(encoders={"image": IMAGE, "text": TEXT}, **FUSED)
  task = tasks.ClassificationTask(TASK, model)
  assert set(task.batch_keys) == {"image", "answer_id", "question"}
  rng = np.random.default_rng(0)
  batch = {"image": jnp.asarray(rng.uniform(-1, 1, (4, 16, 16, 3)), jnp.float32),
           "question": jnp.array([[5, 6, 3, 0], [7, 3, 0, 0], [9, 10, 11, 3], [4, 3, 0, 0]]),
           "answer_id": jnp.array([0, 1, 2, 3])}
  params = jax.jit(task.init)(jax.random.PRNGKey(0), batch)["params"]

  @jax.jit  # One program: op by op, the ViT and the fusion would compile each of their hundreds of ops alone.
  def outputs(params, batch):
    logits, _ = model.apply({"params": params}, {"image": batch["image"], "text": batch["question"]})
    return logits, task.loss_fn(params, batch, jax.random.PRNGKey(1)), task.predict_fns()["classify"](params, batch)

  logits, (loss, metrics), predicted = outputs(params, batch)
  assert float(loss) == pytest.approx(float(optax.softmax_cross_entropy_with_integer_labels(
      logits, batch["answer_id"]).mean()), rel=1e-6)
  np.testing.assert_array_equal(predicted, logits.argmax(-1))
  assert float(metrics["accuracy"]) == pytest.approx(float((predicted == batch["answer_id"]).mean()))


def test_inputs_must_match_the_model_modalities():
  model = Classifier(encoders={"image": IMAGE}, **FUSED)
  with pytest.raises(errors.ConfigError, match=r"feeds modalities \['image', 'text'\] but the model is configured "
                                               r"for \['image'\] \(config.model.encoders\)"):
    tasks.ClassificationTask(TASK, model)
