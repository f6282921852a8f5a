r"""Speech to text on the offline Spoken Shapes dataset: spoken Shapes captions and number-word strings → text.

  python -m experiments.train --config=configs/speech_to_text.py --workdir=runs/speech
  python -m experiments.train --config=configs/speech_to_text.py:head=ctc --workdir=runs/speech_ctc

Args (after a colon): `head=decoder` (the default: the audio encoder's tokens → fusion → the text decoder, which
writes the transcript a character at a time, as captioning writes a caption) or `head=ctc` (the classic
alternative: a linear layer over the characters and a blank at every time step, trained with CTC:
mmjax.models.CtcRecognizer, mmjax.tasks.ctc); `units=chars` (the default) or `units=words`, what the decoder
head writes a step at a time (CTC spells characters); `audio=<name>`, the audio encoder (a key of AUDIO_ENCODERS);
`noisy` (white noise 5 dB below the speech instead of 20); `smoke`; `steps=N`; `batch=N` (0: 32).
Both heads transcribe the test split (voices never heard in training) and the heldout split (those voices
saying Shapes' held-out colour–shape pairs) at the end, scored by word and character error rate (WER, CER;
mmjax.evaluators.speech). Decoding is `config.decode`: greedy by default; beam search for either head by
`python -m experiments.evaluate --workdir=runs/speech --config.decode.method=beam` (the decoder's beam search,
or CTC prefix beam search).
"""
import ml_collections

from configs import common
from mmjax import errors

HEADS = ("decoder", "ctc")
UNITS = {"chars": "spoken_shapes", "words": "spoken_shapes_words"}  # → config.data.name: the tokenizer.
# The audio encoders, each from scratch. The AST's patches span every mel bin, so each token is one time step
# with its 2-D sin-cos position (a decoder needs the order); CTC needs a step per character at least (the longest
# transcript has 87 in a 6 s window): 40 ms steps (150), where the decoder head reads 80 ms ones (75, cheaper).
# The CNN's tokens carry no position: fine for CTC (its frames are in time order), not for a decoder.
# "whisper" is Whisper tiny.en's pretrained encoder (mmjax.pretrained.whisper; 20 ms steps, fine for CTC as they
# are) over the data's 6 s window (300 tokens instead of Whisper's 30 s, 1500: see docs/pretrained.md);
# "whisper_scratch" the same encoder from a random init, so the two differ by the pretraining alone.
AUDIO_ENCODERS = {
    "ast": dict(name="ast", width=128, depth=4, num_heads=4, mlp_dim=256, hop_ms=20.0, patch_time=4, patch_freq=40),
    "cnn": dict(name="cnn", widths=(16, 32, 64), width=128, stem_stride=2, hop_ms=10.0),
    "whisper": dict(name="whisper", variant="tiny", pretrained="whisper-tiny.en", window_seconds=6.0),
    "whisper_scratch": dict(name="whisper", variant="tiny", pretrained="", window_seconds=6.0),
}
# Steps of each head: what fits in 10 minutes on the project's shared 2-core CPU (CTC's encoder reads twice the
# time steps).
STEPS = {"decoder": 400, "ctc": 300}
# What CTC changes in an encoder's block: a finer time step (40 ms).
CTC_TIME_STEP = {"ast": {"patch_time": 2}, "cnn": {"widths": (16, 32)}}
_METRICS = dict(
    metrics=["eval/test/wer", "eval/test/cer", "eval/heldout/wer", "eval/test/wer/caption", "eval/test/wer/digits",
             "wall_s"],
    metric_names={"eval/test/wer": "WER (test)", "eval/test/cer": "CER (test)", "eval/heldout/wer": "WER (heldout)",
                  "eval/test/wer/caption": "WER, captions (test)", "eval/test/wer/digits": "WER, digits (test)",
                  "wall_s": "Wall s per run"},
    lower_is_better=["eval/test/wer", "eval/test/cer", "eval/heldout/wer", "eval/test/wer/caption",
                     "eval/test/wer/digits", "wall_s"])
SWEEPS = {
    # Both heads from scratch, the decoder writing characters or words, each run's wall time a column:
    # python -m experiments.ablate --config=configs/speech_to_text.py --sweep=heads --workdir=runs/speech_heads
    "heads": dict(points=[{"head": "decoder"}, {"head": "ctc"}, {"head": "decoder", "units": "words"}], **_METRICS),
    # The same 10 minutes spent on twice the updates of half the batch:
    # python -m experiments.ablate --config=configs/speech_to_text.py --sweep=batch16 --workdir=runs/speech_batch16
    "batch16": dict(points=[{"head": head, "batch": 16, "steps": 2 * STEPS[head]} for head in HEADS], **_METRICS),
    # CTC for 10 minutes of a less loaded machine (batch 16, 4× the default steps):
    # python -m experiments.ablate --config=configs/speech_to_text.py --sweep=ctc_long --workdir=runs/speech_ctc_long
    "ctc_long": dict(points=[{"head": "ctc", "batch": 16, "steps": 4 * STEPS["ctc"]}], **_METRICS),
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(arg, head="decoder", units="chars", audio="ast", noisy=False, smoke=False, steps=0, batch=0)
  errors.check_choice(arg.head, HEADS, "head", "config arg")
  errors.check_choice(arg.units, UNITS, "units", "config arg")
  if arg.head == "ctc" and arg.units != "chars":
    raise errors.ConfigError(f"units={arg.units}: the CTC head spells characters; use units=chars.")
  errors.check_choice(arg.audio, AUDIO_ENCODERS, "audio encoder", "config arg audio")
  config = common.run(total_steps=STEPS[arg.head], batch_size=arg.batch or 32, eval_batch_size=200, log_every_steps=50)
  # The longest transcript: 87 characters or 16 words, and eos.
  config.data = common.spoken_shapes_data(name=UNITS[arg.units], smoke=arg.smoke, noisy=arg.noisy,
                                          text_len=90 if arg.units == "chars" else 18)
  audio = dict(AUDIO_ENCODERS[arg.audio])
  if arg.head == "ctc":
    audio.update(CTC_TIME_STEP.get(arg.audio, {}))
    config.model = ml_collections.ConfigDict(dict(name="ctc", encoders={"audio": audio}, vocab_size=32,
                                                  **common.compute_settings()))
    config.task = ml_collections.ConfigDict(dict(name="ctc", inputs={"audio": "audio"}, target="text"))
  else:
    config.model = ml_collections.ConfigDict(dict(
        name="captioner", encoders={"audio": audio}, fusion="concat", width=128, fusion_depth=0, num_heads=4,
        mlp_dim=256, fusion_options={},
        decoder=dict(name="transformer", vocab_size=32 if arg.units == "chars" else 64, depth=2, num_heads=4,
                     mlp_dim=256, max_len=config.data.get_ref("text_len"), tie_embedding=True),
        **common.compute_settings()))
    config.task = ml_collections.ConfigDict(dict(name="generation", inputs={"audio": "audio"}, target="text"))
  config.decode = common.decode()
  config.optim = common.optim(lr=1e-3, warmup_steps=100, weight_decay=1e-4)
  config.evals = ml_collections.ConfigDict(dict(
      # every_steps=0: at the end only (each transcribes 400 utterances).
      test=dict(name="speech_recognition", split="test", every_steps=0),
      heldout=dict(name="speech_recognition", split="heldout", every_steps=0),
  ))
  smoke_model = {"batch_size": 16, "eval_batch_size": 16}
  if AUDIO_ENCODERS[arg.audio]["name"] == "whisper":  # Whisper's CPU-sized variant, which no checkpoint has.
    smoke_model.update({"model.encoders.audio.variant": "nano", "model.encoders.audio.pretrained": ""})
  else:
    smoke_model["model.encoders.audio.width"] = 32
  if arg.audio == "ast":
    smoke_model.update({"model.encoders.audio.depth": 1, "model.encoders.audio.num_heads": 2,
                        "model.encoders.audio.mlp_dim": 64})
  if arg.head == "decoder":
    smoke_model.update({"model.width": 32, "model.num_heads": 2, "model.mlp_dim": 64, "model.decoder.depth": 1,
                        "model.decoder.num_heads": 2, "model.decoder.mlp_dim": 64})
  return common.finish(config, arg, smoke_model)
