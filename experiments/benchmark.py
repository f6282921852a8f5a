r"""Measured speed figures, printed as a table and, last, one JSON line.

  python -m experiments.benchmark --benchmark=decode

`decode`: tokens/s of greedy decoding with the KV cache and with full recomputation (the
decoder rerun over every position for each new token), for the decoder of
`--config` (default configs/shapes_caption.py) with random weights, batch `--batch_size`, at
each of `--lengths` new tokens. Decoding never stops at an end-of-text token here, so every
row decodes exactly its number of tokens. Each figure is the median of `--repeats` timed
runs after one compile-and-warm-up run; the encoder runs once, outside the timing.
"""
import json
import statistics
import time

from absl import app, flags
import jax
import jax.numpy as jnp
import ml_collections
from ml_collections import config_flags
import numpy as np

from mmjax import decoding, errors, models
from mmjax.data.tokenizer import WordTokenizer

_BENCHMARK = flags.DEFINE_enum("benchmark", "decode", ["decode"], "What to measure.")
_CONFIG = config_flags.DEFINE_config_file("config", "configs/shapes_caption.py", "A captioning config.",
                                          lock_config=False)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Sequences decoded at once.")
_LENGTHS = flags.DEFINE_list("lengths", ["16", "32", "64", "128"], "Numbers of new tokens.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed runs per figure (the median is reported).")


def _timed(fn, *args, repeats: int) -> tuple[jax.Array, float, float]:
  """(output, first call's seconds — compile included —, median seconds of `repeats` later calls)."""
  start = time.perf_counter()
  output = jax.block_until_ready(fn(*args))
  first = time.perf_counter() - start
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return output, first, statistics.median(times)


def decode_benchmark(config, batch_size: int, lengths: list[int], repeats: int) -> dict:
  """Cached vs uncached greedy decoding speed of the config's Captioner at each length."""
  if config.model.name != "captioner":
    raise errors.ConfigError(f"--config must be a captioning config (model 'captioner'); got {config.model.name!r}.")
  model_config = ml_collections.ConfigDict(config.model.to_dict())  # A copy, free of references to config.data.
  model_config.decoder.max_len = max(lengths)
  model = models.build(model_config)
  image_size = 48
  rng = np.random.default_rng(0)
  image = jnp.asarray(rng.uniform(-1, 1, size=(batch_size, image_size, image_size, 3)), jnp.float32)
  decoder_input = jnp.zeros((1, 2), jnp.int32)
  params = jax.jit(model.init)(jax.random.PRNGKey(0), image[:1], decoder_input)
  encoded, mask = jax.jit(lambda p, x: model.apply(p, x, method=model.encode))(params, image)

  def greedy(params, encoded, mask, length, kv_cache):
    state = model.apply(params, encoded, mask, length, kv_cache, method=model.init_decode_state)
    step_fn = lambda tokens, index, state: model.apply(  # noqa: E731
        params, tokens, index, state, kv_cache, method=model.decode_step)
    return decoding.sample(step_fn, state, max_len=length, bos_id=WordTokenizer(()).bos_id, eos_id=None)

  rows = []
  for length in lengths:
    row = {"new_tokens": length}
    for kv_cache, name in ((True, "cached"), (False, "uncached")):
      fn = jax.jit(greedy, static_argnums=(3, 4))
      tokens, compile_s, seconds = _timed(fn, params, encoded, mask, length, kv_cache, repeats=repeats)
      assert tokens.shape == (batch_size, length)
      row[f"{name}_tokens_per_s"] = batch_size * length / seconds
      row[f"{name}_ms_per_token"] = 1000 * seconds / length
      row[f"{name}_first_call_s"] = compile_s
    rows.append(row)
  by_length = {row["new_tokens"]: row for row in rows}
  longest, shortest = max(lengths), min(lengths)
  return {
      "benchmark": "decode",
      "batch_size": batch_size,
      "decoder": model_config.decoder.to_dict(),
      "rows": rows,
      f"cached_ms_per_token_{longest}_over_{shortest}":
          by_length[longest]["cached_ms_per_token"] / by_length[shortest]["cached_ms_per_token"],
      f"cached_speedup_at_{longest}":
          by_length[longest]["cached_tokens_per_s"] / by_length[longest]["uncached_tokens_per_s"],
  }


def _print_decode_table(result: dict) -> None:
  print(f"Greedy decoding, batch {result['batch_size']}, decoder {result['decoder']}")
  print(f"{'new tokens':>10} | {'cached tok/s':>12} | {'ms/token':>8} | {'uncached tok/s':>14} | "
        f"{'ms/token':>8} | {'speedup':>7}")
  for row in result["rows"]:
    print(f"{row['new_tokens']:>10} | {row['cached_tokens_per_s']:>12.0f} | {row['cached_ms_per_token']:>8.3f} | "
          f"{row['uncached_tokens_per_s']:>14.0f} | {row['uncached_ms_per_token']:>8.3f} | "
          f"{row['cached_tokens_per_s'] / row['uncached_tokens_per_s']:>7.1f}")


def main(argv):
  del argv
  with errors.reported_to_user():
    lengths = [int(length) for length in _LENGTHS.value]
    result = decode_benchmark(_CONFIG.value, _BATCH_SIZE.value, lengths, _REPEATS.value)
  _print_decode_table(result)
  print(json.dumps(result))


if __name__ == "__main__":
  app.run(main, flags_parser=errors.parse_flags)
