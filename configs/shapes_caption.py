r"""Image captioning on the offline Shapes dataset: a ViT encoder and a cross-attending decoder.

  python -m experiments.train --config=configs/shapes_caption.py --workdir=runs/caption

Fine-tune from a contrastive run (its image tower; `freeze=image` keeps it fixed):

  python -m experiments.train --config=configs/shapes_caption.py --workdir=runs/caption_ft \
      --config.init_from=runs/shapes_clip

Args (after a colon): `smoke` (tiny model, small data, a few steps — what the tests run),
`steps=N`. Decoding for the evals is `config.decode` (greedy by default); re-decode a trained
run with beam search by
`python -m experiments.evaluate --workdir=runs/caption --config.decode.method=beam`.
"""
import ml_collections

from configs import common
from mmjax import ablation, errors


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(arg, smoke=False, steps=0)
  config = common.run_config(total_steps=1000, batch_size=128)
  # The longest Shapes caption is 16 words + end-of-text.
  config.data = common.shapes_data_config(variant="small" if arg.smoke else "default", text_len=18)
  config.model = ml_collections.ConfigDict(dict(
      name="captioner",
      # The same image tower as configs/shapes_clip.py, so `init_from` can load it.
      image=dict(variant="Micro/16", pool="cls", posemb="sincos2d"),
      text=None,
      decoder=dict(vocab_size=64, width=128, depth=3, num_heads=4, mlp_dim=512,
                   max_len=config.data.get_ref("text_len"), tie_embedding=True),
      **common.compute_settings(),
  ))
  config.task = ml_collections.ConfigDict(dict(name="generation", target="text", prompt=""))
  config.decode = common.decode_config()
  config.optim = common.optim_config(lr=1e-3, warmup_steps=100, weight_decay=1e-4)

  eval_every = 500
  config.evals = ml_collections.ConfigDict(dict(
      test=dict(type="captioning", split="test", every_steps=eval_every),
      heldout=dict(type="captioning", split="heldout", every_steps=eval_every),
  ))

  if arg.smoke:
    common.smoke_run_settings(config)
    config.model.image.variant = "Nano/8"
    config.model.decoder.update(width=64, depth=2, num_heads=2, mlp_dim=256)
  if arg.steps:
    config.total_steps = arg.steps
  config.lock()
  return config


def sweep(name: str) -> ablation.Sweep:
  """`decoder_depth`: 2, 3 or 4 decoder layers (python -m experiments.ablate --sweep=decoder_depth)."""
  sweeps = {"decoder_depth": ablation.Sweep(
      points=[{"model.decoder.depth": depth} for depth in (2, 3, 4)],
      metrics=("eval/test/cider_d", "eval/heldout/cider_d"),
      metric_names={"eval/test/cider_d": "CIDEr-D (test)", "eval/heldout/cider_d": "CIDEr-D (heldout)"})}
  if name not in sweeps:
    raise errors.ConfigError(f"Unknown sweep {name!r}; known sweeps: {sorted(sweeps)}.")
  return sweeps[name]
