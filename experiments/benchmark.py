r"""Measured speed figures, printed as a table and, last, one JSON line.

  python -m experiments.benchmark --config=configs/bench_clip_s.py
  python -m experiments.benchmark --benchmark=decode --config=configs/shapes_caption.py
  python -m experiments.benchmark --benchmark=memory --config=configs/bench_clip_s.py
  python -m experiments.benchmark --benchmark=loader --config=configs/av_digits.py
  python -m experiments.benchmark --benchmark=scaling --config=configs/bench_clip_s.py

`train` (the default): the real train step of a contrastive `--config` (default
configs/bench_clip_s.py) — task, model, optimizer, sharded state and jit with donation built
as mmjax.trainer.build_run builds them — on random batches of `config.bench`'s image size and text
length. Reported: steps/s and examples/s (the median of `config.bench.windows` timed windows
after a warm-up), the step's GFLOP from XLA's cost analysis beside an analytic count of the
model's matmuls, the float32 matmul peak measured in the same process (a 2048x2048 `jnp.dot`),
MFU = achieved GFLOP/s / peak, compile time, page faults and system seconds per step, peak RSS,
and how fast the Shapes training loader alone produces examples against what the step consumes
(`--nomeasure_loader` skips it). `--nokeep_freed_memory` leaves glibc malloc as it is (see
mmjax.trainer.host_memory.keep_freed_memory), to measure what that setting brings.

`decode`: tokens/s of greedy decoding with the KV cache and with full recomputation (the
decoder rerun over every position for each new token), for the decoder of a captioning
`--config` with random weights, batch `--batch_size`, at each of `--lengths` new tokens.
Decoding never stops at an end-of-text token here, so every row decodes exactly its number of
tokens. After one compile-and-warm-up call of each, `--repeats` rounds each time every length,
cached and uncached, once: a burst of other load then lands on every length alike instead of on
one. Reported per length: the median ms/token and its spread (quartiles, min and max) over the
rounds, and every round's seconds. The encoder runs once, outside the timing.

`memory`: the train step's compiled memory per remat policy (`--remat`) and compute dtype
(`--dtypes`), and the largest batch that fits `--memory_budget_gib` per device; compile only, so it
can run on a busy machine (see experiments/benchmark_memory.py).

`loader`: any training config's own training loader against its own train step, in examples/s, and their
ratio (see experiments/benchmark_loader.py).

`profile`: where the train step's wall time goes (matmuls alone, overlapping, beside other work, other work
only, nothing running) and its longest operations, from a jax.profiler trace (see experiments/benchmark_profile.py).

`scaling`: the train benchmark at each batch size and model variant of `config.bench.scaling` (see
experiments/benchmark_scaling.py).

Each prints a Markdown table (mmjax.publish's, the one the published results show), then the JSON line, which
carries the run's provenance too (commit, date, machine, command: mmjax.provenance). Publish runs with
`python -m experiments.benchmark ... | tee -a bench.txt`, then
`python -m experiments.report --benchmark_json=bench.txt --name=<experiment>`.
"""
import contextlib
import functools
import json
import resource
import statistics
import sys
import time
from collections.abc import Iterator
from typing import Any

from absl import app, flags
import jax
import jax.numpy as jnp
import ml_collections
from ml_collections import config_flags
import numpy as np

from experiments import benchmark_loader, benchmark_memory, benchmark_profile, benchmark_scaling, launch
from mmjax import data as mmdata
from mmjax import decoding, errors, models, nn, provenance, publish, trainer
from mmjax.data.tokenizer import WordTokenizer

_BENCHMARK = flags.DEFINE_enum("benchmark", "train", ["train", "decode", "memory", "loader", "scaling", "profile"],
                               "What to measure.")
_CONFIG = config_flags.DEFINE_config_file(
    "config", "configs/bench_clip_s.py",
    "train, memory, scaling, profile: a contrastive config with a `bench` block; "
    "decode: a captioning config (e.g. configs/shapes_caption.py).", lock_config=False)
_MEASURE_LOADER = flags.DEFINE_bool("measure_loader", True, "train: also time the Shapes training loader alone.")
_KEEP_FREED_MEMORY = flags.DEFINE_bool("keep_freed_memory", True,
                                       "Keep memory freed by jitted steps in malloc (mmjax.runtime).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "decode: sequences decoded at once.")
_LENGTHS = flags.DEFINE_list("lengths", ["16", "32", "64", "128"], "decode: numbers of new tokens.")
_REPEATS = flags.DEFINE_integer("repeats", 9, "decode: timed rounds (each length cached and uncached once); "
                                 "the median and spread over them are reported.")
_MEMORY_BUDGET_GIB = flags.DEFINE_float("memory_budget_gib", 16, "memory: GiB per device the largest batch must fit.")
_REMAT = flags.DEFINE_list("remat", list(nn.REMAT_POLICIES), "memory: the remat policies to compile.")
_DTYPES = flags.DEFINE_list("dtypes", ["float32", "bfloat16"], "memory: the compute dtypes to compile.")
_PROFILE_DIR = flags.DEFINE_string("profile_dir", None,
                                   "profile: where the trace is written (default: a new temp dir).")
_PROFILE_STEPS = flags.DEFINE_integer("profile_steps", 4, "profile: traced train steps.")
_LOADER_ROUNDS = flags.DEFINE_integer("loader_rounds", 3, "loader: rounds, each a loader then a step window.")
_LOADER_WINDOW_S = flags.DEFINE_float("loader_window_s", 2.0, "loader: the least seconds of each timed window.")


def _timed(fn, *args) -> tuple[jax.Array, float]:
  """(output, seconds) of one call, waiting for the result."""
  start = time.perf_counter()
  output = jax.block_until_ready(fn(*args))
  return output, time.perf_counter() - start


def _spread(values: list[float]) -> dict[str, float]:
  """The median, quartiles (inclusive: within min–max however few the values), min and max of `values`."""
  q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else values * 3
  return {"median": statistics.median(values), "q1": q1, "q3": q3, "min": min(values), "max": max(values)}


def matmul_peak_gflops(size: int, repeats: int) -> float:
  """GFLOP/s of a jit-compiled float32 `jnp.dot` of two size x size matrices, median of `repeats` runs:
  the practical matmul peak of this host that MFU is measured against."""
  a, b = jax.random.normal(jax.random.PRNGKey(0), (2, size, size), jnp.float32)
  matmul = jax.jit(jnp.dot)
  _timed(matmul, a, b)  # Compiles.
  seconds = statistics.median(_timed(matmul, a, b)[1] for _ in range(repeats))
  return 2 * size**3 / seconds / 1e9


def analytic_train_gflop(config: ml_collections.ConfigDict) -> float:
  """GFLOP of one train step's matmuls (multiply-adds count two) for a two-tower ViT + text Transformer.

  Forward: patch embedding, per block Q/K/V/output projections, the two attention products and
  the MLP, the two projections and the batch's similarity matrix. Backward costs twice the
  forward (gradients for both operands), except the patch embedding, whose input (the image)
  needs no gradient. Norms, softmax, GELU and the optimizer are left out: they are the gap to
  XLA's count.
  """
  image, text = config.model.image, config.model.text
  image_dims = models.build_encoder("image", image).dims()
  patches = (config.bench.image_size // image_dims["patch_size"]) ** 2

  def encoder(tokens: int, width: int, depth: int, mlp_dim: int) -> int:
    return depth * 2 * tokens * (4 * width * width + 2 * tokens * width + 2 * width * mlp_dim)

  patch_embed = 2 * patches * image_dims["patch_size"] ** 2 * 3 * image_dims["width"]
  per_example = (patch_embed
                 + encoder(patches + (image.pool == "cls"), image_dims["width"], image_dims["depth"],
                           image_dims["mlp_dim"])
                 + encoder(config.bench.text_len, text.width, text.depth, text.mlp_dim)
                 + 2 * (image_dims["width"] + text.width) * config.model.embed_dim
                 + 2 * config.batch_size * config.model.embed_dim)
  return config.batch_size * (3 * per_example - patch_embed) / 1e9


def random_batch(config: ml_collections.ConfigDict, rng: np.random.Generator) -> dict[str, np.ndarray]:
  """Images uniform in [-1, 1]; texts of random length, random tokens ending in the end-of-text id,
  padded with 0."""
  batch_size, size, length = config.batch_size, config.bench.image_size, config.bench.text_len
  eos_id = WordTokenizer(()).eos_id
  lengths = rng.integers(1, length + 1, size=batch_size)
  text = rng.integers(eos_id + 1, config.model.text.vocab_size, size=(batch_size, length))
  text[np.arange(length) >= lengths[:, None]] = 0
  text[np.arange(batch_size), lengths - 1] = eos_id
  image = rng.uniform(-1, 1, size=(batch_size, size, size, 3)).astype(np.float32)
  return {"image": image, "text": text.astype(np.int32)}


def _usage() -> np.ndarray:
  """[user CPU seconds, system CPU seconds, page faults] of this process so far."""
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return np.array([usage.ru_utime, usage.ru_stime, usage.ru_minflt + usage.ru_majflt])


def loader_examples_per_s(data_config: ml_collections.ConfigDict, batch_size: int, batches: int) -> float:
  """Examples/s of the training loader alone, over `batches` batches after a first one."""
  loader = mmdata.train_loader(data_config, batch_size=batch_size, seed=0)
  next(loader)
  start = time.perf_counter()
  for _ in range(batches):
    next(loader)
  return batches * batch_size / (time.perf_counter() - start)


def example_spec(config: ml_collections.ConfigDict) -> dict[str, jax.ShapeDtypeStruct]:
  """One example's field shapes of `random_batch`, which feeds image-text pairs: the config must be contrastive."""
  if config.task.name != "contrastive":
    raise errors.ConfigError(f"The train and memory benchmarks feed image-text pairs: --config must be a "
                             f"contrastive config; got task {config.task.name!r}.")
  batch = random_batch(config, np.random.default_rng(0))
  return {key: jax.ShapeDtypeStruct(value.shape[1:], value.dtype) for key, value in batch.items()}


@contextlib.contextmanager
def warm_train_step(config: ml_collections.ConfigDict) -> Iterator[tuple[Any, Any, list, float]]:
  """(compiled train step, state, 4 random device batches, compile seconds) of the config's real train step (as
  mmjax.trainer.build_run builds it), after `config.bench.warmup_steps` steps; inside the run's mesh context."""
  rng = np.random.default_rng(config.seed)
  host_batches = [random_batch(config, rng) for _ in range(4)]
  run = trainer.build_run(config, example=example_spec(config))
  with run.context():
    state = run.init_state()
    batches = [run.to_device(batch) for batch in host_batches]
    start = time.perf_counter()
    compiled = run.jit_train_step().lower(state, batches[0]).compile()
    compile_s = time.perf_counter() - start
    for i in range(config.bench.warmup_steps):
      state, metrics = compiled(state, batches[i % len(batches)])
    jax.block_until_ready(state)
    yield compiled, state, batches, compile_s


def train_benchmark(config: ml_collections.ConfigDict, measure_loader: bool = True) -> dict:
  """Speed of the config's real train step on random batches; see the module docstring."""
  bench = config.bench
  peak = matmul_peak_gflops(bench.matmul_size, bench.matmul_runs)
  with warm_train_step(config) as (compiled, state, batches, compile_s):
    windows = []
    for _ in range(bench.windows):
      usage, start = _usage(), time.perf_counter()
      for i in range(bench.window_steps):
        state, metrics = compiled(state, batches[i % len(batches)])
      jax.block_until_ready((state, metrics))
      windows.append([time.perf_counter() - start, *(_usage() - usage)])
  if not np.isfinite(float(metrics["loss"])):
    raise errors.NonFiniteError(f"The benchmarked step's loss is {float(metrics['loss'])}.")
  # Each column's median window, per step.
  seconds, user_s, system_s, faults = np.median(windows, axis=0) / bench.window_steps
  gflop = compiled.cost_analysis()["flops"] / 1e9
  analytic = analytic_train_gflop(config)
  steps_per_s = 1 / seconds
  result = {
      "benchmark": "train",
      "steps_per_s": steps_per_s,
      "examples_per_s": steps_per_s * config.batch_size,
      "gflop_per_step": gflop,
      "peak_matmul_gflops": peak,
      "mfu": gflop * steps_per_s / peak,
      "compile_s": compile_s,
      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
      "analytic_gflop_per_step": analytic,
      "xla_over_analytic_gflop": gflop / analytic,
      "achieved_gflops": gflop * steps_per_s,
      "params": sum(x.size for x in jax.tree.leaves(state.params)),
      "batch_size": config.batch_size,
      "page_faults_per_step": faults,
      "system_s_per_step": system_s,
      # CPU seconds per second of step: how many cores the step keeps busy.
      "cores_busy": (user_s + system_s) / seconds,
      "step_temp_mb": compiled.memory_analysis().temp_size_in_bytes / 2**20,
  }
  if measure_loader and bench.loader_batches:
    loader = loader_examples_per_s(config.data, config.batch_size, bench.loader_batches)
    result.update(loader_examples_per_s=loader, loader_over_training=loader / result["examples_per_s"])
  return result


def decode_benchmark(config: ml_collections.ConfigDict, batch_size: int, lengths: list[int], repeats: int) -> dict:
  """Cached vs uncached greedy decoding speed of the config's Captioner at each length: per row, each mode's
  `{mode}_seconds` of every round and the median, quartiles, min and max of its ms/token."""
  if config.model.name != "captioner":
    raise errors.ConfigError(f"--config must be a captioning config (model 'captioner'); got {config.model.name!r}.")
  model_config = ml_collections.ConfigDict(config.model.to_dict())  # A copy, free of references to config.data.
  model_config.decoder.max_len = max(lengths)
  model = models.build(model_config)
  image_size = 48
  rng = np.random.default_rng(0)
  inputs = {"image": jnp.asarray(rng.uniform(-1, 1, size=(batch_size, image_size, image_size, 3)), jnp.float32)}
  decoder_input = jnp.zeros((1, 2), jnp.int32)
  params = jax.jit(model.init)(jax.random.PRNGKey(0), {"image": inputs["image"][:1]}, decoder_input)
  encoded, mask = jax.jit(lambda p, x: model.apply(p, x, method=model.encode_tokens))(params, inputs)

  def greedy(params, encoded, mask, length, kv_cache):
    state = model.apply(params, encoded, mask, length, kv_cache, method=model.init_decode_state)
    step_fn = lambda tokens, index, state: model.apply(  # noqa: E731
        params, tokens, index, state, kv_cache, method=model.decode_step)
    return decoding.sample(step_fn, state, max_len=length, bos_id=WordTokenizer(()).bos_id, eos_id=None)

  modes = {"cached": True, "uncached": False}
  calls, rows = {}, [{"new_tokens": length} for length in lengths]
  for row in rows:
    for name, kv_cache in modes.items():
      calls[row["new_tokens"], name] = functools.partial(jax.jit(greedy, static_argnums=(3, 4)), params, encoded,
                                                         mask, row["new_tokens"], kv_cache)
      tokens, row[f"{name}_first_call_s"] = _timed(calls[row["new_tokens"], name])
      assert tokens.shape == (batch_size, row["new_tokens"])
      row[f"{name}_seconds"] = []
  for _ in range(repeats):
    for row in rows:
      for name in modes:
        row[f"{name}_seconds"].append(_timed(calls[row["new_tokens"], name])[1])
  for row in rows:
    for name in modes:
      spread = _spread([1000 * seconds / row["new_tokens"] for seconds in row[f"{name}_seconds"]])
      row[f"{name}_tokens_per_s"] = batch_size * 1000 / spread["median"]
      row[f"{name}_ms_per_token"] = spread.pop("median")
      row.update({f"{name}_ms_per_token_{stat}": value for stat, value in spread.items()})
  by_length = {row["new_tokens"]: row for row in rows}
  longest, shortest = max(lengths), min(lengths)
  return {
      "benchmark": "decode",
      "batch_size": batch_size,
      "repeats": repeats,
      "decoder": model_config.decoder.to_dict(),
      "rows": rows,
      f"cached_ms_per_token_{longest}_over_{shortest}":
          by_length[longest]["cached_ms_per_token"] / by_length[shortest]["cached_ms_per_token"],
      f"cached_speedup_at_{longest}":
          by_length[longest]["cached_tokens_per_s"] / by_length[longest]["uncached_tokens_per_s"],
  }


def main(argv):
  del argv
  allocator = launch.start(keep_freed_memory=_KEEP_FREED_MEMORY.value)
  code_commit = provenance.commit()
  with errors.reported_to_user():
    if _BENCHMARK.value == "train":
      result = train_benchmark(_CONFIG.value, _MEASURE_LOADER.value)
    elif _BENCHMARK.value == "memory":
      result = benchmark_memory.memory_benchmark(_CONFIG.value, example_spec(_CONFIG.value),
                                                 _MEMORY_BUDGET_GIB.value, _REMAT.value, _DTYPES.value)
    elif _BENCHMARK.value == "profile":
      with warm_train_step(_CONFIG.value) as (compiled, state, batches, _):
        result = benchmark_profile.profile_benchmark(compiled, state, batches, _PROFILE_STEPS.value,
                                                     _PROFILE_DIR.value, top=12)
    elif _BENCHMARK.value == "scaling":
      result = benchmark_scaling.scaling_benchmark(_CONFIG.value, train_benchmark)
    elif _BENCHMARK.value == "loader":
      result = benchmark_loader.loader_benchmark(_CONFIG.value, _LOADER_ROUNDS.value, _LOADER_WINDOW_S.value,
                                                 config_flags.get_config_filename(flags.FLAGS["config"]))
    else:
      lengths = [int(length) for length in _LENGTHS.value]
      result = decode_benchmark(_CONFIG.value, _BATCH_SIZE.value, lengths, _REPEATS.value)
  result["keep_freed_memory"] = allocator
  result.update(provenance.record(code_commit), command=provenance.command_line("experiments.benchmark", sys.argv))
  print(publish.benchmark_table([result]))
  print(json.dumps(result))


if __name__ == "__main__":
  app.run(main, flags_parser=errors.parse_flags)
