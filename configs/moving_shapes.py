r"""Video captioning and video QA on the offline Moving Shapes clips (8 frames of 48×48; mmjax.data.moving_shapes).

  python -m experiments.train --config=configs/moving_shapes.py:task=caption --workdir=runs/ms_caption
  python -m experiments.train --config=configs/moving_shapes.py:task=vqa,video=tubelet --workdir=runs/ms_vqa

Args (after a colon): `task=caption|vqa` (generate the clip's caption, or the answer to its question through the
decoder head, the question read by a text Transformer and fused with the clip's tokens), `video=factorised|tubelet`
(mmjax.models.encoders.video: a per-frame ViT and a temporal Transformer, or ViViT's tubelet embedding and one
Transformer), `frames=all|middle` (`middle`: the single-frame baseline, the same ViT as the factorised encoder's
frame tower reading only the middle frame, the batches' `image`), `fusion=<name>` (a token fusion, as in
configs/shapes_caption.py and configs/shapes_vqa.py), `smoke`, `steps=N`, and `captions_from=<the caption sweep's
workdir>` (task=vqa: the clip's tower — video encoder or the baseline's frame ViT — is the caption run's of the same
encoder and seed, `config.init_from`, and stays frozen, `config.freeze`; the question encoder, fusion and decoder
are trained), and `prompt=True` (task=vqa: the question is also the decoder's prompt, prefix-LM style, so the
answer's first query reads it; see configs/shapes_vqa.py).

The tables of docs/results.md (each encoder and the baseline, both tasks, with wall times):

  python -m experiments.ablate --config=configs/moving_shapes.py --sweep=caption --seeds=3 --workdir=runs/ms_caption
  python -m experiments.ablate --config=configs/moving_shapes.py:captions_from=$PWD/runs/ms_caption --sweep=vqa \
      --seeds=3 --workdir=runs/ms_vqa_frozen

VQA from scratch learns little in 1,000 steps here (one answer token a clip against a caption's 13 words): the
factorised model answered at the answer prior (direction 24.4% on test). Captioning first teaches the tower the
events; the VQA runs then train on its frozen features, which also makes their steps cheaper (docs/results.md).
"""
import ml_collections

from configs import common
from mmjax import errors

TASKS = ("caption", "vqa")
VIDEO_ENCODERS = ("factorised", "tubelet")
FRAMES = ("all", "middle")
QUESTION_TYPES = ("direction", "order", "count", "colour", "shape")  # As mmjax.data.moving_shapes.QUESTION_TYPES.
# The three encoders of the table: each video encoder, and the middle frame alone.
_POINTS = [{"video": "factorised"}, {"video": "tubelet"}, {"frames": "middle"}]
SWEEPS = {
    "caption": dict(
        points=[{"task": "caption", **point} for point in _POINTS],
        metrics=[f"eval/{split}/{metric}" for split in ("test", "heldout") for metric in ("bleu4", "cider_d",
                                                                                          "exact_match")]
        + ["wall_s"],
        metric_names={**{f"eval/{split}/{metric}": f"{name} ({split})" for split in ("test", "heldout")
                         for metric, name in (("bleu4", "BLEU-4"), ("cider_d", "CIDEr-D"),
                                              ("exact_match", "Exact match"))},
                      "wall_s": "Wall s per run"},
        lower_is_better=["wall_s"]),
    "vqa": dict(
        points=[{"task": "vqa", **point} for point in _POINTS],
        metrics=["eval/test/accuracy", "eval/heldout/accuracy",
                 *(f"eval/test/accuracy/{kind}" for kind in QUESTION_TYPES), "wall_s"],
        metric_names={"eval/test/accuracy": "Accuracy (test)", "eval/heldout/accuracy": "Accuracy (heldout)",
                      **{f"eval/test/accuracy/{kind}": f"{kind.capitalize()} (test)" for kind in QUESTION_TYPES},
                      "wall_s": "Wall s per run"},
        lower_is_better=["wall_s"]),
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(arg, smoke=False, steps=0, task="caption", video="factorised", frames="all",
                         fusion="concat", captions_from="", prompt=False)
  errors.check_choice(arg.task, TASKS, "task", "config arg task")
  errors.check_choice(arg.video, VIDEO_ENCODERS, "video encoder", "config arg video")
  errors.check_choice(arg.frames, FRAMES, "frames", "config arg frames")
  errors.check_choice(arg.fusion, common.TOKEN_FUSIONS, "fusion (one that yields tokens, for the decoder)",
                      "config arg fusion")
  config = common.run(total_steps=1000, batch_size=64, eval_batch_size=250)
  config.data = common.moving_shapes_data(smoke=arg.smoke)
  # The frame tower of both the factorised encoder and the single-frame baseline; the tubelet encoder is the same
  # ViT over 2-frame tubes. CPU-sized (Nano, width 64) so that each run of the table takes ≤ 10 minutes on 2 shared
  # cores: Micro/16 ran the factorised model at 0.76 steps/s there, Nano/16 at ~2.4.
  frame_tower = dict(variant="Nano/16", pool="cls", posemb="sincos2d")
  if arg.frames == "middle":
    visual, field = dict(name="vit", **frame_tower), "image"
  elif arg.video == "factorised":
    visual, field = dict(name="factorised", **frame_tower, temporal_depth=2, temporal_pool="mean"), "video"
  else:
    visual, field = dict(name="tubelet", **frame_tower, tubelet_frames=2), "video"
  modality = "image" if field == "image" else "video"
  encoders, inputs = {modality: visual}, {modality: field}
  if arg.task == "vqa":
    encoders["text"] = dict(name="transformer", vocab_size=64, width=64, depth=2, num_heads=2, mlp_dim=256,
                            max_len=config.data.get_ref("question_len"), causal=True, pool="last")
    inputs["text"] = "question"
  if arg.prompt and arg.task != "vqa":
    raise errors.ConfigError("Config arg prompt=True gives the question to the decoder as its prompt: use it with "
                             "task=vqa.")
  target, max_len = ("text", "text_len") if arg.task == "caption" else ("answer", "answer_len")
  max_len = config.data.get_ref(max_len)
  if arg.prompt:  # The prompt comes before the answer.
    max_len = max_len + config.data.get_ref("question_len")
  config.model = ml_collections.ConfigDict(dict(
      name="captioner", encoders=encoders, fusion=arg.fusion, width=64,
      # Captioning hands the decoder the projected clip tokens (depth 0); VQA fuses clip and question first.
      fusion_depth=0 if arg.task == "caption" and arg.fusion == "concat" else 2, num_heads=2, mlp_dim=256,
      fusion_options={},
      decoder=dict(vocab_size=64, depth=2, num_heads=2, mlp_dim=256, max_len=max_len,
                   tie_embedding=True),
      **common.compute_settings()))
  config.task = ml_collections.ConfigDict(dict(name="generation", inputs=inputs, target=target))
  if arg.prompt:
    config.task.prompt = "question"
  if arg.captions_from:
    if arg.task != "vqa":
      raise errors.ConfigError("Config arg captions_from= starts a VQA run from a caption run's clip tower; use it "
                               "with task=vqa.")
    # The caption sweep's run of the same encoder (mmjax.ablation.run_id), `{seed}` being this run's seed.
    point = "frames=middle" if arg.frames == "middle" else f"video={arg.video}"
    config.init_from = f"{arg.captions_from.rstrip('/')}/runs/task=caption,{point},seed={{seed}}"
    config.freeze = modality
  config.decode = common.decode()
  config.optim = common.optim(lr=1e-3, warmup_steps=100, weight_decay=1e-4)
  evaluator = "captioning" if arg.task == "caption" else "vqa"
  config.evals = ml_collections.ConfigDict({split: dict(name=evaluator, split=split, every_steps=0)
                                            for split in ("test", "heldout")})
  # One block per Transformer: the smoke runs' compiles are most of their time.
  smoke_model = {f"model.encoders.{modality}.depth": 1, "model.decoder.depth": 1, "model.mlp_dim": 128,
                 "model.decoder.mlp_dim": 128}
  if arg.frames == "all" and arg.video == "factorised":
    smoke_model["model.encoders.video.temporal_depth"] = 1
  if arg.task == "vqa":
    smoke_model.update({"model.encoders.text.depth": 1, "model.encoders.text.mlp_dim": 128, "model.fusion_depth": 1})
  return common.finish(config, arg, smoke_model)
