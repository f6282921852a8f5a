"""The generation task: teacher-forcing inputs, the masked loss, and decoding through the model."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from mmjax import tasks
from mmjax.data.tokenizer import WordTokenizer
from tests.helpers import image_caption_task

TOKENIZER = WordTokenizer(["w%d" % i for i in range(20)])
# A decoder table wider than the tokenizer's vocabulary, as configs round it up: decoding must not pick the
# ids no token has.
MODEL = ml_collections.ConfigDict(dict(
    name="captioner", encoders=dict(image=dict(name="vit", variant="Nano/8", width=32, num_heads=2)),
    fusion="concat", width=32, fusion_depth=0, num_heads=2, mlp_dim=64,
    decoder=dict(vocab_size=TOKENIZER.vocab_size + 40, depth=2, num_heads=2, mlp_dim=64, max_len=12),
    dtype="float32", param_dtype="float32", remat="none"))


def test_shift_right():
  targets = jnp.array([[5, 6, 3, 0], [7, 3, 0, 0]])
  np.testing.assert_array_equal(tasks.shift_right(targets, 2), [[2, 5, 6, 3], [2, 7, 3, 0]])


def test_sequence_loss_counts_every_valid_token_once():
  """Mean over the 3 valid target tokens of the batch (2 in row 0, 1 in row 1); padding
  positions, whatever their logits, count for nothing."""
  probs = jnp.array([0.1, 0.7, 0.2])
  logits = jnp.log(jnp.broadcast_to(probs, (2, 3, 3)))
  logits = logits.at[1, 2].set(jnp.array([50.0, -50.0, 0.0]))  # A padding position.
  targets = jnp.array([[2, 1, 0], [1, 0, 0]])
  loss, accuracy = tasks.sequence_loss(logits, targets)
  assert float(loss) == pytest.approx(-(np.log(0.2) + 2 * np.log(0.7)) / 3, rel=1e-5)
  assert float(accuracy) == pytest.approx(2 / 3)


def _task(method: str, kv_cache: bool, **decode):
  return image_caption_task(MODEL, TOKENIZER, method, kv_cache, **decode)


@pytest.fixture(scope="module")
def params_and_batch():
  rng = np.random.default_rng(0)
  batch = {"image": jnp.asarray(rng.uniform(-1, 1, size=(4, 16, 16, 3)), jnp.float32),
           "text": jnp.zeros((4, 10), jnp.int32)}
  params = jax.jit(_task("greedy", True).init)(jax.random.PRNGKey(0), batch)["params"]
  # Random init gives near-uniform logits; larger weights give clear winners, so float rounding
  # between the two paths cannot flip an argmax.
  return jax.tree.map(lambda p: 4 * p, params), batch


@pytest.mark.parametrize("length", [4, 10])
@pytest.mark.parametrize("method", ["greedy", "beam"])
def test_cached_decoding_equals_full_recompute(params_and_batch, length, method):
  params, batch = params_and_batch
  cached = jax.jit(lambda p, b: _task(method, True).generate(p, b, length))(params, batch)
  uncached = jax.jit(lambda p, b: _task(method, False).generate(p, b, length))(params, batch)
  assert cached.shape == (4, length)
  np.testing.assert_array_equal(cached, uncached)
  assert (np.asarray(cached)[:, 0] != 0).all()


def test_beam_of_one_is_greedy(params_and_batch):
  params, batch = params_and_batch
  greedy = jax.jit(lambda p, b: _task("greedy", True).generate(p, b, 10))(params, batch)
  beam = jax.jit(lambda p, b: _task("beam", True, beam_size=1).generate(p, b, 10))(params, batch)
  np.testing.assert_array_equal(greedy, beam)


def test_generate_uses_the_target_length(params_and_batch):
  params, batch = params_and_batch
  assert jax.eval_shape(_task("greedy", True).predict_fns()["generate"], params, batch).shape == (4, 10)
  assert jax.eval_shape(_task("greedy", True, max_len=3).predict_fns()["generate"], params, batch).shape == (4, 3)


def test_sampling_never_picks_an_id_beyond_the_tokenizer(params_and_batch):
  """The decoder's table has 40 more ids than the tokenizer; sampling at a high temperature from nearly flat
  logits would pick them most of the time, and a tokenizer cannot decode them."""
  params, batch = params_and_batch
  task = _task("sample", True, temperature=5.0)
  tokens = np.asarray(jax.jit(lambda p, b: task.generate(p, b, 10))(params, batch))
  assert tokens.max() < TOKENIZER.vocab_size and (tokens[:, 0] > 0).all()
  assert all(isinstance(TOKENIZER.decode(row), str) for row in tokens)


def test_an_auxiliary_target_adds_its_weighted_loss_with_the_named_inputs_blanked_or_shared():
  """VQA that also captions: loss = answer loss + 0.5 × the caption loss of the same model with the question
  zeroed (all padding), each computed here by hand through the model."""
  from configs import common
  from mmjax import errors, models
  model_config = ml_collections.ConfigDict(MODEL.to_dict())
  model_config.encoders.text = dict(name="transformer", vocab_size=TOKENIZER.vocab_size, width=32, depth=1,
                                    num_heads=2, mlp_dim=64, max_len=6)
  task_config = ml_collections.ConfigDict(dict(
      name="generation", inputs={"image": "image", "text": "question"}, target="answer",
      auxiliary=dict(target="text", without=("question",), weight=0.5)))
  config = ml_collections.ConfigDict(dict(model=model_config, task=task_config, decode=common.decode()))
  task = tasks.build(config, models.build(config.model), TOKENIZER)
  assert task.batch_keys == ("image", "question", "answer", "text")
  rng = np.random.default_rng(1)
  batch = {"image": jnp.asarray(rng.uniform(-1, 1, size=(3, 16, 16, 3)), jnp.float32),
           "question": jnp.asarray([[5, 6, 7, 3, 0, 0], [8, 3, 0, 0, 0, 0], [9, 9, 3, 0, 0, 0]]),
           "answer": jnp.asarray([[10, 3], [11, 3], [12, 3]]),
           "text": jnp.asarray([[13, 14, 15, 3], [16, 3, 0, 0], [17, 18, 3, 0]])}
  params = task.init(jax.random.PRNGKey(0), batch)["params"]
  loss, metrics = task.loss_fn(params, batch, jax.random.PRNGKey(1))

  def by_hand(inputs, targets):
    logits = task.model.apply({"params": params}, inputs, tasks.shift_right(targets, TOKENIZER.bos_id))
    return tasks.sequence_loss(logits, targets)[0]

  answer_loss = by_hand({"image": batch["image"], "text": batch["question"]}, batch["answer"])
  caption_loss = by_hand({"image": batch["image"], "text": jnp.zeros_like(batch["question"])}, batch["text"])
  assert float(metrics["answer_loss"]) == pytest.approx(float(answer_loss), rel=1e-5)
  assert float(metrics["text_loss"]) == pytest.approx(float(caption_loss), rel=1e-5)
  assert float(loss) == pytest.approx(float(answer_loss + 0.5 * caption_loss), rel=1e-5)
  with_question = by_hand({"image": batch["image"], "text": batch["question"]}, batch["text"])
  assert abs(float(caption_loss) - float(with_question)) > 1e-4  # The question is blanked.
  task_config.auxiliary.without = ()  # Nothing blanked: both targets decoded from one encoding of the inputs.
  shared = tasks.build(config, models.build(config.model), TOKENIZER).loss_fn(params, batch, jax.random.PRNGKey(1))[1]
  assert float(shared["text_loss"]) == pytest.approx(float(with_question), rel=1e-5)
  assert float(shared["answer_loss"]) == pytest.approx(float(answer_loss), rel=1e-5)
  task_config.auxiliary.without = ("caption",)
  with pytest.raises(errors.ConfigError, match=r"config.task.auxiliary=.*input fields among \['image', 'question'\] "
                                               r"\(not \['caption'\]\)"):
    tasks.build(config, models.build(config.model), TOKENIZER)


@pytest.mark.parametrize("kv_cache", [True, False])
def test_a_prompt_prefixes_the_decoder_and_decoding_continues_it(kv_cache):
  """Prefix-LM VQA (`config.task.prompt="question"`): the loss is the answer's alone, computed after the
  question's tokens, and greedy decoding (prompt prefilled into the cache, or the uncached buffer) writes
  exactly what teacher forcing over prompt + decoded tokens predicts at each answer position."""
  from configs import common
  from mmjax import models
  model_config = ml_collections.ConfigDict(MODEL.to_dict())
  model_config.encoders.text = dict(name="transformer", vocab_size=TOKENIZER.vocab_size, width=32, depth=1,
                                    num_heads=2, mlp_dim=64, max_len=6)
  decode = common.decode()
  decode.kv_cache = kv_cache
  config = ml_collections.ConfigDict(dict(model=model_config, decode=decode, task=dict(
      name="generation", inputs={"image": "image", "text": "question"}, target="answer", prompt="question")))
  task = tasks.build(config, models.build(config.model), TOKENIZER)
  assert task.batch_keys == ("image", "question", "answer")
  rng = np.random.default_rng(2)
  batch = {"image": jnp.asarray(rng.uniform(-1, 1, size=(3, 16, 16, 3)), jnp.float32),
           "question": jnp.asarray([[5, 6, 7, 3, 0, 0], [8, 3, 0, 0, 0, 0], [9, 9, 3, 0, 0, 0]]),
           "answer": jnp.asarray([[10, 11, 3], [11, 3, 0], [12, 3, 0]])}
  params = task.init(jax.random.PRNGKey(0), batch)["params"]
  inputs = {"image": batch["image"], "text": batch["question"]}

  def logits_after(prompt, tokens):  # Teacher forcing over prompt, bos, tokens → logits of the positions after bos.
    decoder_input = jnp.concatenate([prompt, tasks.shift_right(tokens, TOKENIZER.bos_id)], axis=1)
    return task.model.apply({"params": params}, inputs, decoder_input)[:, prompt.shape[1]:]

  loss, _ = task.loss_fn(params, batch, jax.random.PRNGKey(1))
  expected, _ = tasks.sequence_loss(logits_after(batch["question"], batch["answer"]), batch["answer"])
  assert float(loss) == pytest.approx(float(expected), rel=1e-5)
  tokens = np.asarray(jax.jit(lambda p, b: task.generate(p, b, 4))(params, batch))
  forced = np.asarray(logits_after(batch["question"], jnp.asarray(tokens))[..., :TOKENIZER.vocab_size].argmax(-1))
  for row in range(3):
    length = next((i + 1 for i, token in enumerate(tokens[row]) if token == TOKENIZER.eos_id), 4)
    np.testing.assert_array_equal(tokens[row, :length], forced[row, :length])
  unprompted = logits_after(batch["question"][:, :0], jnp.asarray(tokens))
  assert not np.allclose(unprompted, logits_after(batch["question"], jnp.asarray(tokens)), atol=1e-3)
