r"""CLIP-style contrastive pretraining on the offline Shapes dataset.

  python -m experiments.train --config=configs/shapes_clip.py --workdir=runs/shapes_clip

Args (after a colon, comma-separated): `smoke` (tiny model, small data, a few steps — what the tests run),
`loss=softmax|sigmoid`, `steps=N`, `itm=true` (also train an image–text matching head on hard negatives mined
in the batch, and re-rank the test/heldout retrieval top-k by it: mmjax.tasks.itm). For example
`--config=configs/shapes_clip.py:smoke,loss=sigmoid`. Any field can also be overridden with
`--config.<key>=<value>`, e.g. `--config.optim.lr=3e-4`.
"""
import math

import ml_collections

from configs import common
from mmjax import errors

SWEEPS = {
    # The README's main-job figures over 3 seeds, with each run's wall time (a column of results.csv):
    # python -m experiments.ablate --config=configs/shapes_clip.py --sweep=headline --seeds=3 --workdir=runs/hl_clip
    # python -m experiments.report --sweep_dir=runs/hl_clip --name=shapes_clip
    "headline": dict(
        points=[{}],
        metrics=["eval/test/i2t_r1", "eval/test/t2i_r1", "eval/heldout/i2t_r1", "eval/heldout/t2i_r1",
                 "eval/zeroshot_colour/accuracy", "wall_s"],
        metric_names={"eval/test/i2t_r1": "I→T R@1 (test)", "eval/test/t2i_r1": "T→I R@1 (test)",
                      "eval/heldout/i2t_r1": "I→T R@1 (heldout)", "eval/heldout/t2i_r1": "T→I R@1 (heldout)",
                      "eval/zeroshot_colour/accuracy": "Zero-shot colour accuracy", "wall_s": "Wall s per run"},
        lower_is_better=["wall_s"]),
    # python -m experiments.ablate --config=configs/shapes_clip.py --sweep=loss --workdir=runs/ablate_loss
    "loss": dict(
        points=[{"loss": "softmax"}, {"loss": "sigmoid"}],
        metrics=["eval/test/i2t_r1", "eval/test/t2i_r1", "eval/heldout/i2t_r1"],
        metric_names={"eval/test/i2t_r1": "I→T R@1 (test)", "eval/test/t2i_r1": "T→I R@1 (test)",
                      "eval/heldout/i2t_r1": "I→T R@1 (heldout)"}),
    # python -m experiments.ablate --config=configs/shapes_clip.py --sweep=itm --workdir=runs/ablate_itm
    "itm": dict(
        points=[{"itm": False}, {"itm": True}],
        metrics=[f"eval/{split}/{score}{direction}_r1" for split in ("test", "heldout")
                 for score in ("", "rerank/", "rerank_joint/") for direction in ("i2t", "t2i")],
        metric_names={f"eval/{split}/{score}{direction}_r1": f"{direction[0].upper()}→{direction[2].upper()} R@1"
                      f"{name} ({split})" for split in ("test", "heldout") for direction in ("i2t", "t2i")
                      for score, name in (("", ""), ("rerank/", " re-ranked by ITM"),
                                          ("rerank_joint/", " re-ranked by ITM + contrastive"))}),
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(arg, smoke=False, loss="softmax", steps=0, itm=False)
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
      # Recall with each tower's input zeroed and shuffled too (each tower runs 3 times; not in smoke runs).
      test=dict(name="retrieval", split="test", every_steps=eval_every,
                reliance=() if arg.smoke else ("image", "text")),
      heldout=dict(name="retrieval", split="heldout", every_steps=eval_every),
      zeroshot_colour=dict(name="zero_shot", split="test", attribute="colour",
                           template="a {size} {colour} {shape}", every_steps=eval_every),
  ))
  if arg.itm:
    # Text and image tokens fused by a cross-modal Transformer (each modality attends to the other, closest to
    # BLIP's text-over-image cross-attention); the head reads its pooled vector.
    config.model.itm = dict(fusion="mult", width=128, depth=1, num_heads=4, mlp_dim=512, fusion_options={})
    # The ITM loss does not train the towers, and the ITM head's gradient is clipped on its own norm: the towers
    # then learn exactly as in contrastive-only training, and re-ranking is a pure add-on to that model (with
    # `itm_trains_towers=True`, as in ALBEF, the ITM gradient moved contrastive R@1 by as much as a change of
    # seed: docs/results.md).
    config.task = ml_collections.ConfigDict(dict(name="contrastive_itm", loss=arg.loss, contrastive_weight=1.0,
                                                 itm_weight=1.0, itm_trains_towers=False))
    config.optim.grad_clip_groups = ("itm_",)
    for key in ("test", "heldout"):
      config.evals[key].name = "itm_retrieval"
      config.evals[key].rerank_k = 16
  itm_smoke = {"model.itm.width": 64, "model.itm.num_heads": 2, "model.itm.mlp_dim": 256} if arg.itm else {}
  return common.finish(config, arg, smoke_model={
      "model.image.variant": "Nano/8", "model.text.width": 64, "model.text.num_heads": 2,
      "model.text.mlp_dim": 256, "model.embed_dim": 64, **itm_smoke})
