r"""CLIP-style contrastive pretraining on the offline Shapes dataset.

  python -m experiments.train --config=configs/shapes_clip.py --workdir=runs/shapes_clip

Args (after a colon, comma-separated): `smoke` (tiny model, small data, a few steps — what the tests run),
`loss=softmax|sigmoid`, `steps=N`. For example `--config=configs/shapes_clip.py:smoke,loss=sigmoid`. Any field
can also be overridden with `--config.<key>=<value>`, e.g. `--config.optim.lr=3e-4`.
"""
import math

import ml_collections

from configs import common
from mmjax import errors

SWEEPS = {
    # python -m experiments.ablate --config=configs/shapes_clip.py --sweep=loss --workdir=runs/ablate_loss
    "loss": dict(
        points=[{"loss": "softmax"}, {"loss": "sigmoid"}],
        metrics=["eval/test/i2t_r1", "eval/test/t2i_r1", "eval/heldout/i2t_r1"],
        metric_names={"eval/test/i2t_r1": "I→T R@1 (test)", "eval/test/t2i_r1": "T→I R@1 (test)",
                      "eval/heldout/i2t_r1": "I→T R@1 (heldout)"}),
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(arg, smoke=False, loss="softmax", steps=0)
  errors.check_choice(arg.loss, ("softmax", "sigmoid"), "loss", "config arg")
  config = common.run(total_steps=900, batch_size=128, eval_batch_size=512)
  # The longest Shapes caption is 16 words + end-of-text.
  config.data = common.shapes_data(smoke=arg.smoke, text_len=18, hard_negatives=True)

  sigmoid = arg.loss == "sigmoid"
  config.model = ml_collections.ConfigDict(dict(
      name="two_tower",
      # Patch 16 on 48x48 images: one token per cell of the 3x3 scene grid.
      image=dict(name="vit", variant="Micro/16", pool="cls", posemb="sincos2d"),
      text=dict(name="transformer", vocab_size=64, width=128, depth=2, num_heads=4, mlp_dim=512,
                max_len=config.data.get_ref("text_len"), causal=True, pool="last"),
      embed_dim=128,
      # SigLIP initialises t = 10, b = -10; CLIP initialises 1/0.07.
      logit_scale_init=math.log(10.0) if sigmoid else math.log(1 / 0.07),
      logit_bias_init=-10.0 if sigmoid else None,
      **common.compute_settings(),
  ))
  config.task = ml_collections.ConfigDict(dict(name="contrastive", loss=arg.loss))
  config.optim = common.optim(lr=2e-3, warmup_steps=50, weight_decay=1e-4)

  eval_every = 500
  config.evals = ml_collections.ConfigDict(dict(
      test=dict(name="retrieval", split="test", every_steps=eval_every),
      heldout=dict(name="retrieval", split="heldout", every_steps=eval_every),
      zeroshot_colour=dict(name="zero_shot", split="test", attribute="colour",
                           template="a {size} {colour} {shape}", every_steps=eval_every),
  ))
  return common.finish(config, arg, smoke_model={
      "model.image.variant": "Nano/8", "model.text.width": 64, "model.text.num_heads": 2,
      "model.text.mlp_dim": 256, "model.embed_dim": 64})
