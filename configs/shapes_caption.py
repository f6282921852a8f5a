r"""Image captioning on the offline Shapes dataset: a ViT encoder and a cross-attending text decoder.

  python -m experiments.train --config=configs/shapes_caption.py --workdir=runs/caption

Fine-tune from a contrastive run (its image tower; `--config.freeze=image` keeps it fixed):

  python -m experiments.train --config=configs/shapes_caption.py --workdir=runs/caption_ft \
      --config.init_from=runs/shapes_clip

Args (after a colon): `smoke` (tiny model, small data, a few steps — what the tests run), `steps=N`,
`decoder=transformer|lstm` (the Transformer decoder, or the LSTM baseline with attention over the image tokens,
Show-Attend-Tell style: mmjax.models.LSTMDecoder).
`--config.model.fusion=<name>` picks the fusion of the image tokens before the decoder: any fusion that
yields tokens (concat, cross_attention, bottleneck, mult); the default `concat` of depth 0 hands the
decoder the projected image tokens. Decoding for the evals is `config.decode` (greedy by default);
re-decode a trained run with beam search by
`python -m experiments.evaluate --workdir=runs/caption --config.decode.method=beam`.
"""
import ml_collections

from configs import common
from mmjax import errors

DECODERS = ("transformer", "lstm")
_METRICS = dict(metrics=["eval/test/cider_d", "eval/heldout/cider_d"],
                metric_names={"eval/test/cider_d": "CIDEr-D (test)", "eval/heldout/cider_d": "CIDEr-D (heldout)"})
SWEEPS = {
    # The README's captioning figures over 3 seeds, with each run's wall time (a column of results.csv):
    # python -m experiments.ablate --config=configs/shapes_caption.py --sweep=headline --seeds=3 --workdir=...
    "headline": dict(
        points=[{}],
        metrics=[f"eval/{split}/{metric}" for split in ("test", "heldout") for metric in ("bleu4", "cider_d",
                                                                                          "exact_match")] + ["wall_s"],
        metric_names={**{f"eval/{split}/{metric}": f"{name} ({split})" for split in ("test", "heldout")
                         for metric, name in (("bleu4", "BLEU-4"), ("cider_d", "CIDEr-D"),
                                              ("exact_match", "Exact match"))},
                      "wall_s": "Wall s per run"},
        lower_is_better=["wall_s"]),
    # python -m experiments.ablate --config=configs/shapes_caption.py --sweep=decoder_depth --workdir=runs/ablate_dec
    "decoder_depth": dict(points=[{"model.decoder.depth": depth} for depth in (2, 3, 4)], **_METRICS),
    # python -m experiments.ablate --config=configs/shapes_caption.py --sweep=decoder --workdir=runs/ablate_decoder
    "decoder": dict(points=[{"decoder": decoder} for decoder in DECODERS], **_METRICS),
    # The token fusions over the image tokens (one layer each; concat of depth 0: the projected tokens as they are),
    # with the test evaluator's reliance on the image: CIDEr-D of captions decoded from a zeroed / shuffled image.
    # python -m experiments.ablate --config=configs/shapes_caption.py --sweep=fusion --seeds=3 --workdir=...
    "fusion": dict(
        points=[{"model.fusion": "concat", "model.fusion_depth": 0},
                *({"model.fusion": fusion, "model.fusion_depth": 1} for fusion in common.TOKEN_FUSIONS)],
        metrics=[*_METRICS["metrics"], "eval/test/exact_match", "eval/test/zeroed/image/cider_d",
                 "eval/test/shuffled/image/cider_d"],
        metric_names={**_METRICS["metric_names"], "eval/test/exact_match": "Exact match (test)",
                      "eval/test/zeroed/image/cider_d": "CIDEr-D, image zeroed",
                      "eval/test/shuffled/image/cider_d": "CIDEr-D, image shuffled"},
        # Bold marks the model that needs the image most: the lowest CIDEr-D without it.
        lower_is_better=["eval/test/zeroed/image/cider_d", "eval/test/shuffled/image/cider_d"]),
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(arg, smoke=False, steps=0, decoder="transformer")
  errors.check_choice(arg.decoder, DECODERS, "decoder", "config arg decoder")
  config = common.run(total_steps=1000, batch_size=128, eval_batch_size=512)
  # The longest Shapes caption is 16 words + end-of-text.
  config.data = common.shapes_data(smoke=arg.smoke, text_len=18)
  decoders = {
      "transformer": dict(name="transformer", vocab_size=64, depth=3, num_heads=4, mlp_dim=512,
                          max_len=config.data.get_ref("text_len"), tie_embedding=True),
      # mlp_dim: the hidden layer of the additive attention's scoring MLP.
      "lstm": dict(name="lstm", vocab_size=64, depth=2, mlp_dim=128, attention="additive",
                   max_len=config.data.get_ref("text_len"), tie_embedding=True),
  }
  config.model = ml_collections.ConfigDict(dict(
      name="captioner",
      # The same image tower as configs/shapes_clip.py, so `init_from` can load it.
      encoders=dict(image=dict(name="vit", variant="Micro/16", pool="cls", posemb="sincos2d")),
      fusion="concat", width=128, fusion_depth=0, num_heads=4, mlp_dim=512, fusion_options={},
      decoder=decoders[arg.decoder],
      **common.compute_settings(),
  ))
  config.task = ml_collections.ConfigDict(dict(name="generation", inputs={"image": "image"}, target="text"))
  config.decode = common.decode()
  config.optim = common.optim(lr=1e-3, warmup_steps=100, weight_decay=1e-4)

  eval_every = 500
  config.evals = ml_collections.ConfigDict(dict(
      # Captions decoded from the zeroed and the shuffled image too (3 decodes; not in smoke runs).
      test=dict(name="captioning", split="test", every_steps=eval_every, reliance=() if arg.smoke else ("image",)),
      heldout=dict(name="captioning", split="heldout", every_steps=eval_every),
  ))
  smoke_decoders = {
      "transformer": {"model.decoder.depth": 2, "model.decoder.num_heads": 2, "model.decoder.mlp_dim": 256},
      "lstm": {"model.decoder.depth": 1, "model.decoder.mlp_dim": 64},
  }
  return common.finish(config, arg, smoke_model={
      "model.encoders.image.variant": "Nano/8", "model.width": 64, "model.num_heads": 2, "model.mlp_dim": 256,
      **smoke_decoders[arg.decoder]})
