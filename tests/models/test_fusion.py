"""Every fusion of mmjax.models.fusion: shapes, masks, permutations, decision rules, errors, gradients.

Each fusion is compiled once (`_Fusion.run`: outputs, the input gradients of a random projection of
pooled and logits, and the outputs for the dicts in another key order) and every test calls that
program on inputs of the same shapes. Parameters are random values of `init`'s shapes rather than
`init`'s own: compiling `init` costs as much as the forward and backward pass (its random-number
code for every weight), and random biases and norm scales are a harder test than zeros and ones.
"""
import functools
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.common import TRANSFORMER_SHARDING_RULES
from mmjax import errors
from mmjax.models import fusion

BATCH, WIDTH, CLASSES = 3, 16, 10
SIZES = {"image": 5, "audio": 7, "text": 4}  # Token counts per modality; `tokens` dicts keep this (unsorted) order.
NAMES = sorted(SIZES)
KWARGS = dict(width=WIDTH, mlp_dim=32, num_classes=CLASSES)
EXTRA = {"bottleneck": dict(depth=2, fusion_layer=1)}  # One unimodal layer, then one bottleneck layer.
LAYERED = ("concat", "cross_attention", "bottleneck", "mult")


def _inputs(seed: int, sizes: dict[str, int] = SIZES) -> tuple[dict, dict]:
  """Random tokens and masks (about a third padding, at random positions, at least one valid token a row)."""
  rng = np.random.default_rng(seed)
  tokens, masks = {}, {}
  for name, size in sizes.items():
    tokens[name] = jnp.asarray(rng.normal(size=(BATCH, size, WIDTH)), jnp.float32)
    mask = rng.random((BATCH, size)) > 0.35
    mask[np.arange(BATCH), rng.integers(0, size, BATCH)] = True
    masks[name] = jnp.asarray(mask)
  return tokens, masks


def _random_params(shapes: Any, seed: int) -> Any:
  def fill(path, leaf):
    noise = rng.normal(size=leaf.shape) * (0.1 if path[-1].key == "scale" else 0.3)
    return jnp.asarray(noise + (path[-1].key == "scale"), leaf.dtype)

  rng = np.random.default_rng(seed)
  return jax.tree_util.tree_map_with_path(fill, nn.unbox(shapes))


class _Fusion(NamedTuple):
  model: nn.Module
  params: Any
  run: Any  # (params, tokens, masks) → (output, grads w.r.t. tokens, output for reordered dicts).


def _build(name: str) -> _Fusion:
  model = fusion.build_fusion(name, **KWARGS, **EXTRA.get(name, {}))
  tokens, masks = _inputs(0)
  params = _random_params(jax.eval_shape(model.init, jax.random.PRNGKey(0), tokens, masks), seed=1)
  rng = np.random.default_rng(2)
  pooled_weights = jnp.asarray(rng.normal(size=(BATCH, WIDTH)), jnp.float32)
  logit_weights = jnp.asarray(rng.normal(size=(BATCH, CLASSES)), jnp.float32)

  def loss(tokens, params, masks):
    output = model.apply(params, tokens, masks)
    value = (output.pooled * pooled_weights).sum()
    if output.logits is not None:
      value += (output.logits * logit_weights).sum()
    return value, output

  @jax.jit
  def run(params, tokens, masks):
    (_, output), grads = jax.value_and_grad(loss, has_aux=True)(tokens, params, masks)
    # Inside the trace, dicts keep their insertion order (jit's arguments arrive sorted by key).
    reordered = model.apply(params, {n: tokens[n] for n in reversed(NAMES)},
                            {n: masks[n] for n in NAMES[1:] + NAMES[:1]})
    return output, grads, reordered

  return _Fusion(model, params, run)


@pytest.fixture(scope="module")
def compiled():
  cache = {}

  def get(name: str) -> _Fusion:
    if name not in cache:
      cache[name] = _build(name)
    return cache[name]
  return get


def _outputs(output: fusion.FusionOutput) -> dict[str, np.ndarray]:
  """pooled, logits, unimodal logits and the fused tokens (padding zeroed), as numpy arrays by name."""
  arrays = {"pooled": output.pooled}
  if output.tokens is not None:
    arrays["tokens"] = jnp.where(output.mask[..., None], output.tokens, 0)
  if output.logits is not None:
    arrays["logits"] = output.logits
  for name, logits in (output.unimodal_logits or {}).items():
    arrays[f"unimodal_{name}"] = logits
  return {key: np.asarray(value) for key, value in arrays.items()}


def _assert_same(got: fusion.FusionOutput, expected: fusion.FusionOutput, **tolerance) -> None:
  got, expected = _outputs(got), _outputs(expected)
  assert got.keys() == expected.keys()
  for key in expected:
    np.testing.assert_allclose(got[key], expected[key], err_msg=key, **(tolerance or dict(rtol=1e-5, atol=1e-5)))


@pytest.mark.parametrize("name", list(fusion.FUSIONS))
def test_outputs_have_the_interface_shapes(compiled, name):
  f = compiled(name)
  tokens, masks = _inputs(3)
  output, grads, _ = f.run(f.params, tokens, masks)
  assert output.pooled.shape == (BATCH, WIDTH)
  if name in fusion.DECISION_LEVEL:
    assert output.logits.shape == (BATCH, CLASSES) and output.logits.dtype == jnp.float32
  else:
    assert output.logits is None
  if name.startswith("late") or name == "hybrid":
    assert sorted(output.unimodal_logits) == NAMES
    assert all(v.shape == (BATCH, CLASSES) for v in output.unimodal_logits.values())
  else:
    assert output.unimodal_logits is None
  for value in jax.tree.leaves((output, grads)):
    assert np.isfinite(value).all()
  if name not in fusion.TOKEN_LEVEL:
    assert output.tokens is None and output.mask is None
    return
  length = output.tokens.shape[1]
  assert output.tokens.shape == (BATCH, length, WIDTH) and output.mask.shape == (BATCH, length)
  assert output.mask.dtype == bool
  # Token layout: the modalities in sorted order (then MBT's bottlenecks), except attention's queries.
  if name == "cross_attention":
    assert length == 4 and output.mask.all()
  else:
    expected_mask = np.concatenate([masks[n] for n in NAMES], 1)
    np.testing.assert_array_equal(output.mask[:, :expected_mask.shape[1]], expected_mask)
    assert length == sum(SIZES.values()) + (4 if name == "bottleneck" else 0)


@pytest.mark.parametrize("name", list(fusion.FUSIONS))
def test_padding_values_change_nothing(compiled, name):
  f = compiled(name)
  tokens, masks = _inputs(4)
  rng = np.random.default_rng(5)
  junk = {n: jnp.where(masks[n][..., None], x, 1e3 * rng.normal(size=x.shape)) for n, x in tokens.items()}
  output, grads, _ = f.run(f.params, tokens, masks)
  junk_output, _, _ = f.run(f.params, junk, masks)
  _assert_same(junk_output, output, rtol=1e-6, atol=1e-6)
  for n in NAMES:  # Padding does not reach pooled or logits, so it gets no gradient.
    assert not np.asarray(grads[n])[~np.asarray(masks[n])].any(), n


@pytest.mark.parametrize("name", list(fusion.FUSIONS))
def test_an_entirely_masked_modality_is_finite_and_ignored(compiled, name):
  f = compiled(name)
  tokens, masks = _inputs(6)
  masks["audio"] = jnp.zeros_like(masks["audio"])
  output, grads, _ = f.run(f.params, tokens, masks)
  for value in jax.tree.leaves((output, grads)):
    assert np.isfinite(value).all()
  other_audio = dict(tokens, audio=tokens["audio"] * -7.0 + 3.0)
  _assert_same(f.run(f.params, other_audio, masks)[0], output, rtol=1e-6, atol=1e-6)
  nothing_valid = {n: jnp.zeros_like(m) for n, m in masks.items()}
  output, grads, _ = f.run(f.params, tokens, nothing_valid)
  for value in jax.tree.leaves((output, grads)):
    assert np.isfinite(value).all()
  other_tokens = {n: x * -7.0 + 3.0 for n, x in tokens.items()}
  _assert_same(f.run(f.params, other_tokens, nothing_valid)[0], output, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", list(fusion.FUSIONS))
def test_permuting_the_batch_permutes_the_outputs(compiled, name):
  f = compiled(name)
  tokens, masks = _inputs(7)
  order = np.array([2, 0, 1])
  output, _, _ = f.run(f.params, tokens, masks)
  permuted, _, _ = f.run(f.params, {n: x[order] for n, x in tokens.items()}, {n: m[order] for n, m in masks.items()})
  _assert_same(permuted, jax.tree.map(lambda x: x[order], output))


@pytest.mark.parametrize("name", list(fusion.FUSIONS))
def test_permuting_tokens_within_a_modality_leaves_pooled_and_logits_unchanged(compiled, name):
  """No fusion adds positions, so this is invariance of pooled/logits for every fusion; the fused
  tokens from that modality permute the same way, except attention's, which are its queries."""
  f = compiled(name)
  tokens, masks = _inputs(8)
  output, _, _ = f.run(f.params, tokens, masks)
  for n, seed in zip(NAMES, range(9, 12)):
    order = np.random.default_rng(seed).permutation(SIZES[n])
    permuted, _, _ = f.run(f.params, dict(tokens, **{n: tokens[n][:, order]}), dict(masks, **{n: masks[n][:, order]}))
    expected = output
    if name in fusion.TOKEN_LEVEL and name != "cross_attention":  # Where the modality's tokens sit when fused.
      start = sum(SIZES[m] for m in NAMES[:NAMES.index(n)])
      positions = np.arange(output.tokens.shape[1])
      positions[start:start + SIZES[n]] = start + order
      expected = output.replace(tokens=output.tokens[:, positions], mask=output.mask[:, positions])
    _assert_same(permuted, expected)


@pytest.mark.parametrize("name", list(fusion.FUSIONS))
def test_the_order_of_the_dicts_changes_nothing(compiled, name):
  f = compiled(name)
  output, _, reordered = f.run(f.params, *_inputs(12))
  _assert_same(reordered, output, rtol=0, atol=0)


@pytest.mark.parametrize("name", list(fusion.FUSIONS))
def test_gradients_reach_every_modality(compiled, name):
  f = compiled(name)
  tokens, masks = _inputs(13)
  _, grads, _ = f.run(f.params, tokens, masks)
  for n in NAMES:
    assert np.abs(np.asarray(grads[n])).sum() > 1e-6, n


def test_vote_logits_match_a_hand_computed_vote():
  logits = {  # Three modalities, three classes; each row's argmax noted on the right.
      "audio": np.array([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0]]),  # 0, 1
      "image": np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]),  # 1, 2
      "text": np.array([[3.0, 0.0, 1.0], [1.0, 0.0, 0.0]]),  # 0, 0
  }
  votes = np.array([[2, 1, 0], [1, 1, 1]])  # Row 1 is a three-way tie.
  softmax = lambda x: np.exp(x) / np.exp(x).sum(-1, keepdims=True)  # noqa: E731
  mean_probs = np.mean([softmax(v) for v in logits.values()], 0)
  got = np.asarray(jax.jit(fusion.vote_logits)(
      {n: jnp.asarray(v, jnp.float32) for n, v in logits.items()}))
  np.testing.assert_allclose(got, np.log((votes + mean_probs) / 4), rtol=1e-6)
  np.testing.assert_allclose(np.exp(got).sum(-1), 1, rtol=1e-6)
  # Row 0: class 0 wins 2 votes to 1. Row 1: the tie goes to the highest mean probability, class 1
  # (audio's 3.0 outweighs image's 1.0 for class 2 and text's 1.0 for class 0).
  assert mean_probs[1].argmax() == 1
  np.testing.assert_array_equal(got.argmax(-1), [0, 1])


def test_vote_logits_gradients_are_finite_when_probabilities_vanish():
  """Class 2's probability underflows to 0 in both modalities; its log stays finite, and so do the gradients."""
  logits = {"a": jnp.array([[5.0, 0.0, -500.0]]), "b": jnp.array([[0.0, 800.0, 0.0]])}
  loss = lambda x: (fusion.vote_logits(x) * jnp.array([1.0, 2.0, 3.0])).sum()  # noqa: E731
  value, grads = jax.jit(lambda x: (fusion.vote_logits(x), jax.grad(loss)(x)))(logits)
  assert np.isfinite(value).all() and all(np.isfinite(g).all() for g in grads.values())
  assert np.asarray(value).argmax() == 1  # A 1–1 tie: b's certainty beats a's 99%.


def test_late_fusions_combine_their_unimodal_logits(compiled):
  tokens, masks = _inputs(14)
  for name, combine in (("late_mean", lambda u: sum(u.values()) / len(u)), ("late_vote", fusion.vote_logits)):
    f = compiled(name)
    output, _, _ = f.run(f.params, tokens, masks)
    np.testing.assert_allclose(output.logits, combine(output.unimodal_logits), rtol=1e-5, atol=1e-6)
  # late_learned weighs the modalities equally at init (checked on a small one, cheaper to initialise),
  # and with equal weights it is late_mean.
  small = fusion.build_fusion("late_learned", width=4, mlp_dim=4, num_classes=2)
  small_inputs = {n: jnp.ones((1, 1, 4)) for n in NAMES}, {n: jnp.ones((1, 1), bool) for n in NAMES}
  weights = jax.jit(small.init)(jax.random.PRNGKey(0), *small_inputs)
  np.testing.assert_array_equal(weights["params"]["modality_weights"].value, np.zeros(len(NAMES)))
  learned, mean = compiled("late_learned"), compiled("late_mean")
  params = dict(learned.params["params"], modality_weights=jnp.zeros(len(NAMES)))
  learned_output, _, _ = learned.run({"params": params}, tokens, masks)
  heads_only = {k: v for k, v in params.items() if k != "modality_weights"}
  _assert_same(learned_output, mean.run({"params": heads_only}, tokens, masks)[0])
  # Learned weights move the fused logits towards the favoured modality's.
  favour_text = dict(params, modality_weights=jnp.array([0.0, 0.0, 50.0]))
  output, _, _ = learned.run({"params": favour_text}, tokens, masks)
  np.testing.assert_allclose(output.logits, output.unimodal_logits["text"], rtol=1e-5, atol=1e-5)


def test_weighted_mean_averages_the_pooled_vectors_with_its_weights(compiled):
  """Learned: the softmax of its parameter (equal weights: the plain mean of the pooled vectors); fixed: the
  given weights, normalised."""
  tokens, masks = _inputs(15)
  means = {n: (np.asarray(tokens[n]) * np.asarray(masks[n])[..., None]).sum(1) / np.asarray(masks[n]).sum(1)[:, None]
           for n in NAMES}
  learned = compiled("weighted_mean")
  for logits in (np.zeros(3), np.array([1.0, -2.0, 0.5])):
    output, _, _ = learned.run({"params": {"modality_weights": jnp.asarray(logits, jnp.float32)}}, tokens, masks)
    weights = np.exp(logits) / np.exp(logits).sum()
    np.testing.assert_allclose(output.pooled, sum(w * means[n] for w, n in zip(weights, NAMES)), rtol=1e-5,
                               atol=1e-6)
  fixed = fusion.build_fusion("weighted_mean", **KWARGS, weights=(1.0, 0.0, 3.0))
  output = fixed.apply({}, tokens, masks)
  np.testing.assert_allclose(output.pooled, 0.25 * means["audio"] + 0.75 * means["text"], rtol=1e-5, atol=1e-6)
  with pytest.raises(errors.ConfigError, match=r"weights=\[1.0, 2.0\] must be 3 non-negative numbers"):
    fusion.build_fusion("weighted_mean", **KWARGS, weights=(1.0, 2.0)).apply({}, tokens, masks)


def test_relation_fusion_is_the_mean_of_g_over_pairs_of_valid_objects():
  """objects="image,text": g = ReLU(W1 o_i + W2 o_j + Wc c + b) on every ordered pair of valid image and text
  tokens, c = the audio tokens' masked mean; pooled = Dense of g's mean over the pairs (numpy, by hand)."""
  tokens, masks = _inputs(16)
  model = fusion.build_fusion("relation", **KWARGS, depth=1, pair_dim=8, objects="image,text")
  variables = _random_params(jax.eval_shape(model.init, jax.random.PRNGKey(0), tokens, masks), seed=2)
  pooled = np.asarray(model.apply(variables, tokens, masks).pooled)
  p = jax.tree.map(np.asarray, variables["params"])
  dense = lambda name, x: x @ p[name]["kernel"] + p[name]["bias"]
  for b in range(BATCH):
    objects = np.concatenate([np.asarray(tokens[n][b])[np.asarray(masks[n][b])] for n in ("image", "text")])
    audio = np.asarray(tokens["audio"][b])[np.asarray(masks["audio"][b])].mean(0)
    g = [np.maximum(dense("g_first", oi) + dense("g_second", oj) + dense("g_condition", audio), 0)
         for oi in objects for oj in objects]
    np.testing.assert_allclose(pooled[b], dense("f_in", np.mean(g, 0)), rtol=1e-4, atol=1e-5)
  with pytest.raises(errors.ConfigError, match=r"fusion_options.objects names \['video'\]"):
    fusion.build_fusion("relation", **KWARGS, objects="image,video").apply(variables, tokens, masks)
  with pytest.raises(errors.ConfigError, match="depth=0"):
    fusion.build_fusion("relation", **KWARGS, depth=0)


def test_concat_pools_one_modalitys_fused_token_when_asked():
  """pool="text:last": the pooled vector is the fused token of the text's last valid token (ViLT's and ALBEF's
  answer from the text's [CLS]); the fused tokens are those of the default pool."""
  tokens, masks = _inputs(17)
  masks["text"] = jnp.arange(SIZES["text"])[None, :] < jnp.array([[1], [3], [4]])  # Padded at the end, as text is.
  model = fusion.build_fusion("concat", **KWARGS, pool="text:last")
  variables = _random_params(jax.eval_shape(model.init, jax.random.PRNGKey(0), tokens, masks), seed=3)
  output = model.apply(variables, tokens, masks)
  default = fusion.build_fusion("concat", **KWARGS).apply(variables, tokens, masks)
  np.testing.assert_array_equal(output.tokens, default.tokens)
  start = SIZES["audio"] + SIZES["image"]  # Modalities in sorted order: audio, image, text.
  last = start + np.array([0, 2, 3])
  np.testing.assert_allclose(output.pooled, np.asarray(output.tokens)[np.arange(BATCH), last], rtol=1e-6)
  with pytest.raises(errors.ConfigError, match=r"pool='video:last'.*'text:last'"):
    fusion.build_fusion("concat", **KWARGS, pool="video:last").apply(variables, tokens, masks)


def test_config_errors_name_the_problem():
  with pytest.raises(errors.ConfigError, match=r"Unknown fusion 'x' \(config.model.fusion\); known: ") as error:
    fusion.build_fusion("x", **KWARGS)
  assert all(name in str(error.value) for name in fusion.FUSIONS)
  with pytest.raises(errors.ConfigError, match="fusion_layer=3"):
    fusion.build_fusion("bottleneck", **KWARGS, depth=2, fusion_layer=3)
  with pytest.raises(errors.ConfigError, match="num_classes"):
    fusion.build_fusion("late_vote", width=WIDTH, mlp_dim=32)
  fusion.build_fusion("cross_attention", width=WIDTH, mlp_dim=32)  # Needs no num_classes.


@pytest.mark.parametrize("name", list(fusion.FUSIONS))
def test_a_decoder_takes_exactly_the_fusions_that_yield_tokens(name):
  """The decoder's check is the fusions' own `yields_tokens`: the token-level ones pass, every other one is a
  ConfigError that names the ones a decoder can use."""
  if name in fusion.TOKEN_LEVEL:
    fusion.check_yields_tokens(name)
    return
  with pytest.raises(errors.ConfigError, match=rf"fusion='{name}' yields no fused tokens .* use one of "
                                               r"\['bottleneck', 'concat', 'cross_attention', 'mult'\]"):
    fusion.check_yields_tokens(name)


def test_input_errors_name_the_modality():
  model = fusion.build_fusion("early", **KWARGS)
  tokens, masks = _inputs(15)
  init = functools.partial(jax.eval_shape, model.init, jax.random.PRNGKey(0))
  with pytest.raises(errors.InputError, match=r"tokens\['audio'\].*width 16"):
    init(dict(tokens, audio=jnp.zeros((BATCH, 7, 8))), masks)
  with pytest.raises(errors.InputError, match=r"masks\['text'\]"):
    init(tokens, dict(masks, text=jnp.ones((BATCH, 5), bool)))
  with pytest.raises(errors.InputError, match="same modalities"):
    init(tokens, {n: m for n, m in masks.items() if n != "image"})


@pytest.mark.parametrize("name", list(fusion.FUSIONS))
def test_one_modality_and_logical_axis_names(name):
  """With a single modality every fusion still works (MulT's cross-modal blocks become self-attention),
  and every weight's logical axes are ones the sharding rules know."""
  model = fusion.build_fusion(name, **KWARGS, **EXTRA.get(name, {}))
  tokens, masks = _inputs(16, {"text": 4})
  variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), tokens, masks)
  output = jax.eval_shape(model.apply, variables, tokens, masks)
  assert output.pooled.shape == (BATCH, WIDTH)
  known = {rule[0] for rule in TRANSFORMER_SHARDING_RULES} | {None}
  boxes = jax.tree.leaves(variables, is_leaf=lambda x: isinstance(x, nn.Partitioned))
  assert boxes and all(isinstance(box, nn.Partitioned) and set(box.names) <= known for box in boxes)


@pytest.mark.parametrize("name", LAYERED)
def test_remat_keeps_the_parameters_and_differentiates(name):
  tokens, masks = _inputs(17)
  models = [fusion.build_fusion(name, **KWARGS, **EXTRA.get(name, {}), remat=remat) for remat in ("none", "full")]
  shapes = [jax.eval_shape(model.init, jax.random.PRNGKey(0), tokens, masks) for model in models]
  assert jax.tree.structure(shapes[0]) == jax.tree.structure(shapes[1])
  grads = jax.eval_shape(jax.grad(lambda t, v: models[1].apply(v, t, masks).pooled.sum()), tokens, shapes[1])
  assert jax.tree.map(lambda g: g.shape, grads) == jax.tree.map(lambda t: t.shape, tokens)
