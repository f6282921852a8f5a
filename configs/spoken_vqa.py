r"""Spoken VQA on the offline Spoken Shapes dataset: a Shapes scene and its question, spoken → the answer.

  python -m experiments.train --config=configs/spoken_vqa.py --workdir=runs/spoken_vqa
  python -m experiments.train --config=configs/spoken_vqa.py:fusion=cross_attention,head=classifier --workdir=...

Args (after a colon): `fusion=<name>`, how the image and the spoken question are fused (a fusion of
mmjax.models.FUSIONS: the decoder head takes those that yield tokens, the classifier head any), or a unimodal
baseline that sees one input: `image_only` (never hears the question) or `audio_only` (never sees the scene);
`head=decoder` (the default: the answer generated character by character) or `head=classifier` (over the
dataset's answer set); `question=audio` (the default) or `question=text` (the same questions written, read by a
character-level Transformer: the reference that shows what listening costs); `smoke`; `steps=N`.
The test (voices never heard in training) and heldout (held-out colour–shape pairs too) splits are scored by
the VQA evaluator: accuracy overall and per question type, next to the majority-answer baseline, and again with
the image and with the question zeroed and shuffled (modality reliance).
"""
import ml_collections

from configs import common
from mmjax import errors

HEADS = ("decoder", "classifier")
QUESTIONS = ("audio", "text")
UNIMODAL = {"image_only": "image", "audio_only": "question"}
# The question encoders: the speech-to-text config's AST (80 ms steps), or characters of the written question.
QUESTION_ENCODERS = {
    "audio": dict(name="ast", width=128, depth=4, num_heads=4, mlp_dim=256, hop_ms=20.0, patch_time=4, patch_freq=40),
    "text": dict(name="transformer", vocab_size=32, width=128, depth=2, num_heads=4, mlp_dim=256, max_len=72,
                 causal=False, pool="mean"),
}
_METRICS = dict(metrics=["eval/test/accuracy", "eval/heldout/accuracy", "eval/test/majority_accuracy",
                         "eval/test/zeroed/image/accuracy", "wall_s"],
                metric_names={"eval/test/accuracy": "Accuracy (test)", "eval/heldout/accuracy": "Accuracy (heldout)",
                              "eval/test/majority_accuracy": "Majority baseline (test)",
                              "eval/test/zeroed/image/accuracy": "Image zeroed (test)", "wall_s": "Wall s per run"},
                lower_is_better=["eval/test/zeroed/image/accuracy", "wall_s"])
SWEEPS = {
    # The spoken question against the written one, decoder head:
    # python -m experiments.ablate --config=configs/spoken_vqa.py --sweep=question --workdir=runs/spoken_vqa
    "question": dict(points=[{"question": question} for question in QUESTIONS], **_METRICS),
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(arg, fusion="concat", head="decoder", question="audio", smoke=False, steps=0)
  errors.check_choice(arg.head, HEADS, "head", "config arg")
  errors.check_choice(arg.question, QUESTIONS, "question", "config arg")
  errors.check_choice(arg.fusion, (*common.FUSIONS, *UNIMODAL), "fusion", "config arg")
  config = common.run(total_steps=450, batch_size=32, eval_batch_size=200, log_every_steps=50)
  config.data = common.spoken_shapes_data(name="spoken_vqa", smoke=arg.smoke)
  question_modality = "audio" if arg.question == "audio" else "text"
  question_field = "audio" if arg.question == "audio" else "question"
  encoders = {"image": dict(name="vit", variant="Micro/16", pool="cls", posemb="sincos2d"),
              question_modality: dict(QUESTION_ENCODERS[arg.question])}
  inputs = {"image": "image", question_modality: question_field}
  if arg.fusion in UNIMODAL:
    kept = "image" if UNIMODAL[arg.fusion] == "image" else question_modality
    encoders, inputs = {kept: encoders[kept]}, {kept: inputs[kept]}
  fused = dict(encoders=encoders, fusion="concat" if arg.fusion in UNIMODAL else arg.fusion, width=128,
               fusion_depth=2, num_heads=4, mlp_dim=256, fusion_options={}, **common.compute_settings())
  config.model, config.task = common.vqa_model_and_task(
      head=arg.head, fused=fused, inputs=inputs,
      decoder=dict(vocab_size=32, depth=1, num_heads=4, mlp_dim=256, max_len=config.data.get_ref("answer_len"),
                   tie_embedding=True))
  config.decode = common.decode()
  config.optim = common.optim(lr=1e-3, warmup_steps=100, weight_decay=1e-4)
  # Accuracy again with the image and the question zeroed and shuffled: 5 passes over each split (not in smoke).
  reliance = () if arg.smoke else tuple(field for field in ("image", question_field) if field in inputs.values())
  config.evals = ml_collections.ConfigDict(dict(
      test=dict(name="vqa", split="test", every_steps=0, reliance=reliance),
      heldout=dict(name="vqa", split="heldout", every_steps=0),
  ))
  smoke_model = {"batch_size": 16, "eval_batch_size": 16, "model.encoders.image.variant": "Nano/8",
                 "model.width": 32, "model.fusion_depth": 1, "model.num_heads": 2, "model.mlp_dim": 64}
  if question_modality in encoders:
    smoke_model.update({f"model.encoders.{question_modality}.{key}": value
                        for key, value in (("width", 32), ("depth", 1), ("num_heads", 2), ("mlp_dim", 64))})
  if arg.head == "decoder":
    smoke_model.update({"model.decoder.num_heads": 2, "model.decoder.mlp_dim": 64})
  return common.finish(config, arg, smoke_model)
