r"""Multimodal sentiment with sarcasm on the offline sentiment corpus (face + voice + words → attitude and score).

  python -m experiments.train --config=configs/sentiment.py:fusion=concat --workdir=runs/sentiment
  python -m experiments.ablate --config=configs/sentiment.py --sweep=fusion --seeds=3 --workdir=runs/ablate_sentiment

Args (after a colon): `fusion=<name>`, a fusion of mmjax.models.FUSIONS or a unimodal baseline `image_only` /
`audio_only` / `text_only`; `modalities=image+audio+text` (any subset); `smoke`; `steps=N`.

One model predicts both CMU-MOSI targets: the class (negative / neutral / positive; cross-entropy) and the score
in −3..3 (a second head on the fused vector; L1 loss). The test evaluator reports, as the sentiment literature
does, accuracy (Acc-3), macro-F1, Acc-2 (the score's sign, non-neutral examples), MAE and Pearson correlation of
the score; each overall and per subset (`sincere/accuracy`, `sarcastic/accuracy`, ...), and modality reliance:
every metric again with each modality zeroed and shuffled (`zeroed/text/sarcastic/accuracy_drop`, ...).
In the sarcastic subset the words say the opposite of the attitude that voice and face show (and the label
follows), so a text-only model must fail there (see mmjax.data.sentiment).
"""
import ml_collections

from configs import common
from mmjax import errors

FUSIONS = common.FUSIONS
UNIMODAL = {"image_only": "image", "audio_only": "audio", "text_only": "text"}
MODALITIES = ("image", "audio", "text")
TEXT_LEN = 8  # The longest sentence has 6 words, + eos.
WIDTH = 64
# 200 steps of 64 (4 epochs): about 1–2 min of one core here for a fused model, so that the ablation's 45 runs
# fit on a shared 2-core machine; a 300-step concat run reached 97.5% (sincere) and 92.2% (sarcastic) accuracy.
STEPS = 200

_NAMES = {"accuracy": "Acc-3", "macro_f1": "F1", "acc2": "Acc-2", "score_mae": "MAE", "score_corr": "Corr"}
_SUBSET_ACCURACY = {"eval/test/sincere/accuracy": "Sincere Acc-3", "eval/test/sarcastic/accuracy": "Sarcastic Acc-3"}
_HEADLINE = {**_SUBSET_ACCURACY, **{f"eval/test/{metric}": name for metric, name in _NAMES.items()}}
# How much each modality matters, per subset: the accuracy lost when it is shuffled across the batch.
_RELIANCE = {f"eval/test/shuffled/{m}/{subset}/accuracy_drop": f"{subset} −{m}" for subset in ("sincere", "sarcastic")
             for m in MODALITIES}
_POINTS = [{"fusion": fusion} for fusion in [*UNIMODAL, *FUSIONS]]
SWEEPS = {
    # Every fusion and every unimodal baseline: sincere vs sarcastic accuracy and the CMU-MOSI metrics ...
    "fusion": dict(points=_POINTS, metrics=[*_HEADLINE, "wall_s"], metric_names={**_HEADLINE, "wall_s": "Wall s"},
                   lower_is_better=["eval/test/score_mae", "wall_s"]),
    # ... and, from the same runs of the fusions (published from the same workdir with `--sweep=reliance`), modality
    # reliance per subset.
    "reliance": dict(points=[{"fusion": fusion} for fusion in FUSIONS], metrics=list(_RELIANCE),
                     metric_names=_RELIANCE),
}


def _modalities(arg: ml_collections.ConfigDict) -> tuple[str, ...]:
  if arg.fusion in UNIMODAL:
    return (UNIMODAL[arg.fusion],)
  modalities = tuple(m for m in arg.modalities.split("+") if m)
  if set(modalities) - set(MODALITIES) or not modalities:
    raise errors.ConfigError(f"modalities={arg.modalities!r}: name one or more of {list(MODALITIES)} joined by "
                             "'+', e.g. modalities=image+audio.")
  return modalities


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(arg, fusion="concat", modalities="image+audio+text", smoke=False, steps=0)
  errors.check_choice(arg.fusion, (*FUSIONS, *UNIMODAL), "fusion", "config arg")
  modalities = _modalities(arg)
  config = common.run(total_steps=STEPS, batch_size=64, eval_batch_size=300, log_every_steps=50,
                      checkpoint_every_steps=STEPS)
  config.data = ml_collections.ConfigDict(dict(
      name="sentiment", variant="small" if arg.smoke else "default", data_dir=common.DEFAULT_DATA_DIR,
      text_len=TEXT_LEN, worker_count=0))
  # Small CNNs on the 32×32 face (4×4 = 16 tokens) and on the 3 s log-mel (40 ms windows every 20 ms, the frame
  # rate of prosody: 149 frames × 40 bins → 10 × 3 = 30 tokens after the strided stem and three downsamplings;
  # narrow first stages, as its input is 6× larger); a one-layer Transformer on the words (vocab_size 0: the
  # dataset's vocabulary).
  encoders = {"image": dict(name="cnn", widths=(16, 32, 64), width=WIDTH, stem_stride=2),
              "audio": dict(name="cnn", widths=(8, 16, 32, 64), width=WIDTH, stem_stride=2, window_ms=40.0,
                            hop_ms=20.0),
              "text": dict(name="transformer", vocab_size=0, width=WIDTH, depth=1, num_heads=4, mlp_dim=128,
                           max_len=TEXT_LEN, causal=False, pool="mean")}
  config.model = ml_collections.ConfigDict(dict(
      name="classifier", encoders={m: encoders[m] for m in modalities},
      fusion="early" if arg.fusion in UNIMODAL else arg.fusion, score_head=True,
      width=WIDTH, fusion_depth=1, num_heads=4, mlp_dim=128, fusion_options={}, **common.compute_settings()))
  config.task = ml_collections.ConfigDict(dict(
      name="classification", label="label", inputs={m: m for m in modalities}, score="score", score_loss_weight=1.0,
      # Late and hybrid fusions train each modality's head on its own too (see ClassificationTask).
      unimodal_loss_weight=1.0))
  config.optim = common.optim(lr=1e-3, warmup_steps=40, weight_decay=1e-4)
  config.evals = ml_collections.ConfigDict(dict(
      test=dict(name="classification", split="test", every_steps=0, label="label", score="score",
                subsets="subset", reliance=modalities),
  ))
  return common.finish(config, arg)
