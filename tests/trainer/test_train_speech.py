"""Speech to text (decoder and CTC heads) and spoken VQA end to end: smoke runs on the small Spoken Shapes sets."""
import jax
import pytest

from configs import common, speech_to_text, spoken_vqa
from mmjax import data as mmdata
from mmjax import trainer
from tests.helpers import read_metrics, smoke_config

pytestmark = pytest.mark.slow

# A few steps, each logged, so the loss can be seen to fall; evaluated on the 8 test and 8 heldout examples.
STEPS = {"total_steps": 6, "log_every_steps": 1, "optim.warmup_steps": 1}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> str:
  directory = str(tmp_path_factory.mktemp("tfds_spoken"))
  for name in ("spoken_shapes", "spoken_vqa"):
    data_config = common.spoken_shapes_data(name=name, smoke=True)
    data_config.data_dir = directory
    mmdata.prepare(data_config)
  return directory


def _train(config, workdir) -> tuple[dict, list[float]]:
  """(final metrics, the logged losses) of `config` trained on one device: what is checked here does not depend on
  the mesh (tests/parallel checks that), and eight fake devices would multiply the compile time."""
  final = trainer.train(config, str(workdir), devices=jax.devices()[:1])
  return final, [row["train/loss"] for row in read_metrics(str(workdir)) if "train/loss" in row]


def test_speech_to_text_trains_and_reports_error_rates(data_dir, tmp_path):
  """The CTC head, decoded by prefix beam search. (The decoder head is the captioner and generation task that
  tests/trainer trains on images; its run is built, not trained, below: the test budget.)"""
  config = smoke_config(data_dir, speech_to_text, "smoke,head=ctc", **STEPS, **{"decode.method": "beam"})
  final, losses = _train(config, tmp_path)
  assert len(losses) == 6 and losses[-1] < losses[0]
  for split in ("test", "heldout"):
    assert final[f"eval/{split}/num_examples"] == 8
    assert final[f"eval/{split}/wer"] >= 0 and final[f"eval/{split}/cer"] >= 0
    assert 0 <= final[f"eval/{split}/sentence_accuracy"] <= 1


@pytest.mark.parametrize("units,vocab", [("chars", 31), ("words", 52)])
def test_the_decoder_head_reads_audio_and_writes_characters_or_words(data_dir, units, vocab):
  config = smoke_config(data_dir, speech_to_text, f"smoke,units={units}")
  run = trainer.build_run(config, devices=jax.devices()[:1])  # Shapes only: nothing is compiled.
  assert run.tokenizer.vocab_size == vocab and run.task.batch_keys == ("audio", "text")
  assert run.abstract.params["audio_encoder"] and run.abstract.params["text_decoder"]


def test_spoken_vqa_trains_and_reports_accuracy(data_dir, tmp_path):
  # The classifier head: the decoder head's answer generation is Shapes VQA's, tested there (tests/trainer).
  final, losses = _train(smoke_config(data_dir, spoken_vqa, "smoke,head=classifier", **STEPS), tmp_path)
  assert len(losses) == 6 and losses[-1] < losses[0]
  assert final["eval/test/num_examples"] == 8 and 0 <= final["eval/test/accuracy"] <= 1
  assert 0 <= final["eval/test/majority_accuracy"] <= 1
