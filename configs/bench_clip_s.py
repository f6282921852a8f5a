r"""A fixed two-tower CLIP for speed comparisons with other frameworks (float32, batch 64).

  python -m experiments.benchmark --config=configs/bench_clip_s.py

The shape is fixed by the "Scale and speed" issue so that figures compare across frameworks:
images 64x64x3 into a pre-LN ViT (patch 8: 64 patches + a class token, width 256, depth 4,
4 heads, MLP 1024); texts of 32 tokens (vocabulary 8192) into a causal pre-LN Transformer of
the same size, pooled at the end-of-text token; both projected to 256; the symmetric softmax
contrastive loss with a learnable temperature (init 1/0.07); AdamW at a constant lr 1e-3 with
weight decay 0.01 and PyTorch's/optax's default betas, no gradient clipping. Inputs are random
(`config.bench`); `config.data` is only the Shapes dataset whose loader speed the benchmark
reports beside the step's.

Args (after a colon): `smoke` (a tiny model, batch 8, the small Shapes variant and few timed
steps — what the tests run).
"""
import math

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(arg, smoke=False)
  config = common.run(total_steps=1000, batch_size=64, eval_batch_size=64)
  config.bench = ml_collections.ConfigDict(dict(
      image_size=64,
      text_len=32,
      # Timing: warm-up steps after the compile, then `windows` windows of `window_steps` steps;
      # the median window is reported.
      warmup_steps=5,
      windows=5,
      window_steps=6,
      # The float32 matmul whose speed is the peak MFU is measured against: size x size, median of runs.
      matmul_size=2048,
      matmul_runs=30,
      # Loader throughput: batches read after one warm-up batch (0: not measured).
      loader_batches=30,
      # --benchmark=scaling (experiments/benchmark_scaling.py): the model at each batch size, then each model
      # variant (changes to both towers) at model_batch_size; fewer timed steps per row than above.
      scaling=dict(batch_sizes=(16, 32, 64, 128, 256), model_batch_size=64,
                   models={"wide": dict(width=512, num_heads=8, mlp_dim=2048), "deep": dict(depth=8)},
                   warmup_steps=2, windows=3, window_steps=4),
  ))
  # As configs/shapes_clip.py reads it: the longest Shapes caption is 16 words + end-of-text.
  config.data = common.shapes_data(smoke=arg.smoke, text_len=18)

  tower = dict(width=256, depth=4, num_heads=4, mlp_dim=1024)
  config.model = ml_collections.ConfigDict(dict(
      name="two_tower",
      # 64 patches + the class token: the learned position table has exactly 65 rows.
      image=dict(name="vit", variant="Micro/8", patch_size=8, pool="cls", posemb="learn", max_tokens=65, **tower),
      text=dict(name="transformer", vocab_size=8192, max_len=config.bench.get_ref("text_len"), causal=True, pool="last",
                **tower),
      embed_dim=256,
      logit_scale_init=math.log(1 / 0.07),
      logit_bias_init=None,
      **common.compute_settings(),
  ))
  config.task = ml_collections.ConfigDict(dict(name="contrastive", loss="softmax"))
  # warmup 0 and end_lr_factor 1: a constant learning rate.
  config.optim = common.optim(lr=1e-3, warmup_steps=0, weight_decay=0.01, b2=0.999, end_lr_factor=1.0,
                              grad_clip_norm=None)
  config.evals = ml_collections.ConfigDict()

  small = dict(width=32, depth=1, num_heads=2, mlp_dim=64)
  return common.finish(config, arg, smoke_model={
      "batch_size": 8, "eval_batch_size": 8,
      **{f"bench.{k}": v for k, v in dict(image_size=16, text_len=8, warmup_steps=1, windows=2, window_steps=2,
                                          matmul_size=256, matmul_runs=3, loader_batches=2).items()},
      "bench.scaling.batch_sizes": (8, 16), "bench.scaling.model_batch_size": 8,
      "bench.scaling.models": {"wide": {"width": 64, "mlp_dim": 128}},
      **{f"bench.scaling.{k}": 1 for k in ("warmup_steps", "windows", "window_steps")},
      "model.image.max_tokens": 5, **{f"model.image.{k}": v for k, v in small.items()},
      "model.text.vocab_size": 64, **{f"model.text.{k}": v for k, v in small.items()}, "model.embed_dim": 32})
