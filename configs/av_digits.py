r"""Tri-modal digit classification on the offline AV-Digits dataset (image + speech + text → digit).

  python -m experiments.train --config=configs/av_digits.py:fusion=cross_attention --workdir=runs/avd
  python -m experiments.ablate --config=configs/av_digits.py --sweep=fusion --seeds=3 --workdir=runs/ablate_fusion

Args (after a colon): `variant=redundant` (every modality shows the digit, each often badly
corrupted) or `variant=synergy` (the label is (image digit + spoken digit) mod 10: no single
modality tells it); `fusion=<name>`, a fusion of mmjax.models.fusion.FUSIONS or a unimodal
baseline `image_only` / `audio_only` / `text_only`; `modalities=image+audio+text` (any subset);
`image=vit|cnn`, `audio=ast|cnn` (the encoders); `smoke`; `steps=N`.
The test evaluator reports accuracy and macro-F1, and how much each modality matters: the same
metrics with it zeroed and with it shuffled across the batch (`zeroed/<m>/accuracy_drop`, ...).
"""
import ml_collections

from configs import common
from mmjax import ablation, errors
from mmjax.data import av_digits
from mmjax.models import fusion as fusion_lib

UNIMODAL = {"image_only": "image", "audio_only": "audio", "text_only": "text"}
VARIANTS = ("redundant", "synergy")
MODALITIES = ("image", "audio", "text")


def _modalities(arg: ml_collections.ConfigDict) -> tuple[str, ...]:
  if arg.fusion in UNIMODAL:
    return (UNIMODAL[arg.fusion],)
  modalities = tuple(m for m in arg.modalities.split("+") if m)
  unknown = sorted(set(modalities) - set(MODALITIES))
  if unknown or not modalities:
    raise errors.ConfigError(f"modalities={arg.modalities!r}: name one or more of {list(MODALITIES)} joined by '+', "
                             "e.g. modalities=image+audio.")
  return modalities


def _encoders(arg: ml_collections.ConfigDict, text_len) -> dict:
  image = {"vit": dict(kind="vit", variant="Nano/7", channels=1, pool="mean", posemb="sincos2d"),
           "cnn": dict(kind="cnn", widths=(16, 32, 64), width=64)}
  audio = {"ast": dict(kind="ast", sample_rate=av_digits.SAMPLE_RATE, width=64, depth=1, num_heads=4, mlp_dim=128,
                       patch_time=14, patch_freq=8),
           "cnn": dict(kind="cnn", sample_rate=av_digits.SAMPLE_RATE, widths=(16, 32, 64), width=64)}
  for name, choices in (("image", image), ("audio", audio)):
    if arg[name] not in choices:
      raise errors.ConfigError(f"Unknown {name} encoder {arg[name]!r}; known: {sorted(choices)}.")
  text = dict(vocab_size=64, width=64, depth=1, num_heads=4, mlp_dim=128, max_len=text_len, causal=False,
              pool="mean")
  return {"image": image[arg.image], "audio": audio[arg.audio], "text": text}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(arg, variant="redundant", fusion="cross_attention", modalities="image+audio+text",
                         image="vit", audio="ast", smoke=False, steps=0)
  if arg.variant not in VARIANTS:
    raise errors.ConfigError(f"Unknown variant {arg.variant!r}; known: {list(VARIANTS)}.")
  if arg.fusion not in fusion_lib.FUSIONS and arg.fusion not in UNIMODAL:
    raise errors.ConfigError(f"Unknown fusion {arg.fusion!r}; known fusions: {sorted(fusion_lib.FUSIONS)}, "
                             f"and the unimodal baselines {sorted(UNIMODAL)}.")
  modalities = _modalities(arg)
  config = common.run_config(total_steps=1000, batch_size=64, eval_batch_size=500, log_every_steps=100,
                             checkpoint_every_steps=500)
  config.data = common.av_digits_data_config(variant=arg.variant + ("_small" if arg.smoke else ""), text_len=16)
  encoders = _encoders(arg, config.data.get_ref("text_len"))
  config.model = ml_collections.ConfigDict(dict(
      name="multimodal_classifier", num_classes=10,
      fusion="early" if arg.fusion in UNIMODAL else arg.fusion,
      width=64, fusion_depth=1, num_heads=4, mlp_dim=128,
      fusion_options={},
      **{m: (encoders[m] if m in modalities else None) for m in MODALITIES},
      **common.compute_settings()))
  config.task = ml_collections.ConfigDict(dict(
      name="classification", label="label", inputs={m: m for m in modalities},
      # Late and hybrid fusions train each modality's head on its own too (see ClassificationTask).
      unimodal_loss_weight=1.0))
  config.optim = common.optim_config(lr=1e-3, warmup_steps=100, weight_decay=1e-4)
  config.evals = ml_collections.ConfigDict(dict(
      # Evaluated at the end (every_steps is set to total_steps below).
      test=dict(type="classification", split="test", every_steps=0, label="label",
                num_classes=config.model.get_ref("num_classes"), reliance=modalities),
  ))
  if arg.smoke:
    common.smoke_run_settings(config)
  if arg.steps:
    config.total_steps = arg.steps
  config.evals.test.every_steps = config.total_steps
  config.lock()
  return config


def sweep(name: str) -> ablation.Sweep:
  """`fusion`: every fusion and every unimodal baseline, on both variants."""
  sweeps = {
      "fusion": ablation.Sweep(
          points=[{"variant": variant, "fusion": fusion} for variant in VARIANTS
                  for fusion in [*UNIMODAL, *fusion_lib.FUSIONS]],
          metrics=("eval/test/accuracy", "eval/test/macro_f1"),
          columns="variant",
          metric_names={"eval/test/accuracy": "Accuracy", "eval/test/macro_f1": "Macro-F1"}),
  }
  if name not in sweeps:
    raise errors.ConfigError(f"Unknown sweep {name!r} of configs/av_digits.py; known sweeps: {sorted(sweeps)}.")
  return sweeps[name]
