r"""Tri-modal digit classification on the offline AV-Digits dataset (image + speech + text → digit).

  python -m experiments.train --config=configs/av_digits.py:fusion=cross_attention --workdir=runs/avd
  python -m experiments.ablate --config=configs/av_digits.py --sweep=fusion --seeds=3 --workdir=runs/ablate_fusion

Args (after a colon): `variant=redundant` (every modality shows the digit, each often badly
corrupted) or `variant=synergy` (the label is (image digit + spoken digit) mod 10: no single
modality tells it); `fusion=<name>`, a fusion of mmjax.models.FUSIONS or a unimodal
baseline `image_only` / `audio_only` / `text_only`; `modalities=image+audio+text` (any subset);
`image=vit|cnn`, `audio=ast|cnn` (the encoders); `smoke`; `steps=N`; `pretrain=<modality>`,
`encoders_from=<dir>` and `frozen`, the synergy recipe's two stages below.
The test evaluator reports accuracy and macro-F1, and how much each modality matters: the same
metrics with it zeroed and with it shuffled across the batch (`zeroed/<m>/accuracy_drop`, ...).
The number of classes and the audio's sample rate come from the dataset's metadata.

The synergy recipe, two stages, each a sweep of the ablation runner (3 seeds; wall times in docs/results.md):

  python -m experiments.ablate --config=configs/av_digits.py:image=cnn,audio=cnn --sweep=pretrain --seeds=3 \
      --workdir=/tmp/avd2/pretrain
  python -m experiments.ablate --config=configs/av_digits.py:image=cnn,audio=cnn,encoders_from=/tmp/avd2/pretrain \
      --sweep=synergy --seeds=3 --workdir=/tmp/avd2/synergy

Stage 1, `pretrain=<modality>`: that modality's encoder alone (the `<modality>_only` model) trained and tested
on its own digit (`image_digit`, `audio_digit` or `text_digit` of the synergy train split; never `label`) for
PRETRAIN_STEPS, with AUGMENT (training-time shifts of the image, speed changes of the audio); its test
accuracy is how well the encoder reads its digit on held-out writers and voices.
Stage 2, `encoders_from=<the stage-1 sweep's workdir>`: trained on `label` only, with AUGMENT, for
FUSION_STEPS; each encoder starts from the stage-1 run of its modality and of this run's own seed
(`config.init_from` lists those runs, `{seed}` standing for config.seed: see mmjax.trainer.finetune) and is
fine-tuned (`frozen=true` keeps the encoders fixed, which did worse). Both stages must name the same encoders
(`image=`, `audio=`): a tower that does not fit is an error.
"""
import ml_collections

from configs import common
from mmjax import errors

FUSIONS = common.FUSIONS
UNIMODAL = {"image_only": "image", "audio_only": "audio", "text_only": "text"}
VARIANTS = ("redundant", "synergy")
MODALITIES = ("image", "audio", "text")
# The synergy recipe's encoders: the CNNs, whose strided stems (image 28×28 → 14×14, the audio's 98×40 log-mel
# → 25×10) cost a quarter of stride 1 / 2 and read held-out writers and voices better (docs/results.md).
IMAGE_ENCODERS = {"vit": dict(name="vit", variant="Nano/7", channels=1, pool="mean", posemb="sincos2d"),
                  "cnn": dict(name="cnn", widths=(16, 32, 64), width=64, stem_stride=2)}
AUDIO_ENCODERS = {"ast": dict(name="ast", width=64, depth=1, num_heads=4, mlp_dim=128, patch_time=14, patch_freq=8),
                  "cnn": dict(name="cnn", widths=(16, 32, 64), width=64, stem_stride=4)}

# The synergy recipe: training-time augmentation of each modality's input (config.data keys) in both stages,
# the steps of each encoder's stage 1 (`pretrain=<modality>`) and of stage 2 (`encoders_from=...`).
AUGMENT = {"image": {"image_shift": 2}, "audio": {"audio_stretch": 0.15}, "text": {}}
PRETRAIN_STEPS = {"image": 6000, "audio": 3000, "text": 1000}
FUSION_STEPS = 2000

_METRICS = dict(metrics=["eval/test/accuracy", "eval/test/macro_f1"], columns="variant",
                metric_names={"eval/test/accuracy": "Accuracy", "eval/test/macro_f1": "Macro-F1"})
SWEEPS = {
    # Every fusion and every unimodal baseline, on both variants.
    "fusion": dict(points=[{"variant": variant, "fusion": fusion} for variant in VARIANTS
                           for fusion in [*UNIMODAL, *FUSIONS]], **_METRICS),
    # The synergy recipe: stage 1, each encoder on its own digit (Accuracy is of that digit) ...
    "pretrain": dict(points=[{"variant": "synergy", "pretrain": modality} for modality in MODALITIES], **_METRICS),
    # ... stage 2 (with `encoders_from=<the stage-1 workdir>`), every fusion and baseline on the synergy label;
    "synergy": dict(points=[{"variant": "synergy", "fusion": fusion} for fusion in [*UNIMODAL, *FUSIONS]],
                    **_METRICS),
    # the same for the recipe's fusion (concat) first, then the unimodal baselines, a decision-level fusion, another
    # token-level one and early fusion (its runs are the "synergy" sweep's: in the same workdir either reuses them);
    "synergy_core": dict(points=[{"variant": "synergy", "fusion": fusion} for fusion in
                                 ["concat", *UNIMODAL, "late_mean", "cross_attention", "early"]], **_METRICS),
    # the token-level fusions with the stage-1 encoders kept frozen.
    "synergy_frozen": dict(points=[{"variant": "synergy", "fusion": fusion, "frozen": True}
                                   for fusion in common.TOKEN_FUSIONS], **_METRICS),
}


def pretrain_run(sweep_workdir: str, variant: str, modality: str) -> str:
  """The workdir of the stage-1 run of `modality` in the `pretrain` sweep's `sweep_workdir`, with `{seed}` for the
  seed: the ablation runner names it by its point and seed (mmjax.ablation.run_id)."""
  return f"{sweep_workdir.rstrip('/')}/runs/variant={variant},pretrain={modality},seed={{seed}}"


def _modalities(arg: ml_collections.ConfigDict) -> tuple[str, ...]:
  if arg.fusion in UNIMODAL:
    return (UNIMODAL[arg.fusion],)
  modalities = tuple(m for m in arg.modalities.split("+") if m)
  if set(modalities) - set(MODALITIES) or not modalities:
    raise errors.ConfigError(f"modalities={arg.modalities!r}: name one or more of {list(MODALITIES)} "
                                    "joined by '+', e.g. modalities=image+audio.")
  return modalities


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(arg, variant="redundant", fusion="cross_attention", modalities="image+audio+text",
                         image="vit", audio="ast", smoke=False, steps=0, pretrain="", encoders_from="", frozen=False)
  errors.check_choice(arg.variant, VARIANTS, "variant", "config arg")
  errors.check_choice(arg.fusion, (*FUSIONS, *UNIMODAL), "fusion", "config arg")
  errors.check_choice(arg.image, IMAGE_ENCODERS, "image encoder", "config arg")
  errors.check_choice(arg.audio, AUDIO_ENCODERS, "audio encoder", "config arg")
  if arg.pretrain:
    errors.check_choice(arg.pretrain, MODALITIES, "pretrain modality", "config arg")
    if arg.encoders_from:
      raise errors.ConfigError("Config args pretrain= (stage 1) and encoders_from= (stage 2) exclude each other.")
    arg.fusion = f"{arg.pretrain}_only"
  modalities = _modalities(arg)
  label = f"{arg.pretrain}_digit" if arg.pretrain else "label"
  config = common.run(total_steps=1000, batch_size=64, eval_batch_size=500, log_every_steps=100)
  config.data = common.av_digits_data(variant=arg.variant, smoke=arg.smoke)
  if arg.pretrain:
    config.total_steps = PRETRAIN_STEPS[arg.pretrain]
  if arg.encoders_from:
    config.total_steps = FUSION_STEPS
    config.init_from = ":".join(pretrain_run(arg.encoders_from, arg.variant, m) for m in modalities)
    config.freeze = ",".join(modalities) if arg.frozen else ""
  elif arg.frozen:
    raise errors.ConfigError("Config arg frozen=true freezes the encoders loaded by encoders_from=; give that too.")
  if arg.pretrain or arg.encoders_from:
    for modality in modalities:
      config.data.update(AUGMENT[modality])
  encoders = {"image": IMAGE_ENCODERS[arg.image], "audio": AUDIO_ENCODERS[arg.audio],
              "text": dict(name="transformer", vocab_size=64, width=64, depth=1, num_heads=4, mlp_dim=128,
                           max_len=config.data.get_ref("text_len"), causal=False, pool="mean")}
  config.model = ml_collections.ConfigDict(dict(
      name="classifier", encoders={m: encoders[m] for m in modalities},
      fusion="early" if arg.fusion in UNIMODAL else arg.fusion,
      width=64, fusion_depth=1, num_heads=4, mlp_dim=128, fusion_options={},
      **common.compute_settings()))
  config.task = ml_collections.ConfigDict(dict(
      name="classification", label=label, inputs={m: m for m in modalities},
      # Late and hybrid fusions train each modality's head on its own too (see ClassificationTask).
      unimodal_loss_weight=1.0))
  config.optim = common.optim(lr=1e-3, warmup_steps=100, weight_decay=1e-4)
  config.evals = ml_collections.ConfigDict(dict(
      # every_steps=0: at the end only.
      test=dict(name="classification", split="test", every_steps=0, label=label, reliance=modalities),
  ))
  return common.finish(config, arg)
