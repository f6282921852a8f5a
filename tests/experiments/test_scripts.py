"""The scripts report bad input as one `error:` line and an exit code, without a traceback. A flag or config
error is reported before JAX is imported, so each case here costs a Python start, not a compile."""
import re
from pathlib import Path
import subprocess
import sys

import pytest

from tests.helpers import REPO

# (case, script, flags, exit code, stderr regex).
BAD_COMMAND_LINES = [
    ("mistyped key", "train", ["--config.optim.lrr=1"], 2,
     r"^error: Unknown config key --config.optim.lrr: config.optim has no key 'lrr'; did you mean 'lr'\? The keys "
     r"of config.optim: b1, b2, end_lr_factor, grad_clip_norm, lr, warmup_steps, weight_decay\.$"),
    ("override under a block the config does not have", "train", ["--config.decode.beam_size=4"], 2,
     r"^error: Unknown config key --config.decode.beam_size: 'decode' is not a block of this config\. Its top-level "
     r"keys: batch_size, .*, model, optim, .*, total_steps\.$"),
    ("wrong value type", "train", ["--config.optim.lr=fast"], 2, r"^error: .*fast"),
    ("unknown config arg", "train", ["--config=configs/shapes_clip.py:smok"], 2,
     r"^error: Unknown config arg 'smok' in 'smok'; known args: \['itm', 'loss', 'smoke', 'steps'\]\.$"),
    ("config file that does not exist", "train", ["--config=configs/shapes_clp.py"], 2,
     r"^error: Cannot load the config file 'configs/shapes_clp.py': No such file or directory .* Configs in "
     r"configs/: av_digits.py, .*shapes_caption.py, shapes_clip.py, shapes_vqa.py, .*\.py\.$"),
    ("negative lr", "train", ["--config.optim.lr=-1"], 2, r"^error: config.optim.lr must be positive; got -1"),
    # These two are raised as the model is traced for its state's shapes (jax.eval_shape), before any allocation.
    ("no heads", "train", ["--config.model.text.num_heads=0"], 2,
     r"^error: Attention width 64 is not divisible by num_heads=0 \(text_encoder/encoder/block_0/attn/key\); heads "
     r"that divide it: \[1, 2, 4, 8, 16, 32, 64\]\.$"),
    ("absurd text length", "train", ["--config.model.text.max_len=1000000"], 2,
     r"^error: Attention over 1,000,000 x 1,000,000 positions \(text_encoder/encoder/block_0/attn\) needs 7,451 GiB "
     r"for the scores of a single example \(2 heads, float32\), more than the .* GiB of the .*; shorten the sequence"),
    ("several processes without a coordinator", "train", ["--num_processes=2", "--process_id=0"], 2,
     r"^error: --num_processes=2 also needs --coordinator_address=<host:port of process 0>"),
    ("cluster detection outside a cluster", "train", ["--distributed_auto"], 2,
     r"^error: --distributed_auto found no cluster to join \(coordinator_address should be defined.\): JAX detects "
     r"Cloud TPU pods, SLURM .*; elsewhere give --coordinator_address, --num_processes and --process_id\.$"),
    ("evaluate a directory that is no workdir", "evaluate", [], 2,
     r"^error: no checkpoint to evaluate in .*; train first with python -m experiments.train --workdir="),
]


@pytest.mark.parametrize("case,script,flags,code,message", BAD_COMMAND_LINES, ids=[c[0] for c in BAD_COMMAND_LINES])
def test_scripts_report_bad_input_on_one_line_without_traceback(shapes_data_dir, tmp_path, case, script, flags, code,
                                                                message):
  del case
  command = [sys.executable, "-m", f"experiments.{script}", f"--workdir={tmp_path}"]
  if script == "train":
    command += ["--config=configs/shapes_clip.py:smoke", f"--config.data.data_dir={shapes_data_dir}"]
  result = subprocess.run(command + flags, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode == code, result.stderr[-3000:]
  assert "Traceback" not in result.stderr, result.stderr[-3000:]
  errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
  assert len(errors) == 1 and re.search(message, errors[0]), result.stderr[-3000:]


def test_evaluate_reports_an_override_its_stored_config_has_no_place_for_on_one_line(tmp_path):
  """experiments.evaluate applies `--config.*` to the workdir's config.json as its flag is defined, at import."""
  from configs import shapes_clip

  (tmp_path / "config.json").write_text(shapes_clip.get_config("smoke").to_json())
  command = [sys.executable, "-m", "experiments.evaluate", f"--workdir={tmp_path}", "--config.decode.beam_size=4"]
  result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode == 2 and result.stderr.startswith(
      "error: Unknown config key --config.decode.beam_size: 'decode' is not a block of this config. Its top-level "
      "keys: batch_size,") and len(result.stderr.splitlines()) == 1, result.stderr[-3000:]


def test_classify_photos_names_the_espresso_and_reports_a_truncated_checkpoint_on_one_line(tmp_path):
  """The ImageNet head of the imported EfficientNet-Lite0 on the sample photos; then a .pth cut short."""
  command = [sys.executable, "-m", "experiments.classify_photos", "--top_k=1"]
  result = subprocess.run(command + ["--json"], cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert re.search(r"coffee .*\n\s+9\d\.\d+%\s+espresso", result.stdout), result.stdout
  # --json: the same, last, as the table README publishes (experiments.report --table_json).
  (tmp_path / "photos.txt").write_text(result.stdout)
  from mmjax.publish import table
  published = table.publish(str(tmp_path / "photos.txt"), "photos", str(tmp_path))
  markdown = (Path(published) / "table.md").read_text()
  assert re.search(r"^\| coffee \| espresso 9\d\.\d% \|$", markdown, re.M), markdown
  assert "Measured by `python -m experiments.classify_photos --top_k=1 --json`; commit: " in markdown
  from mmjax import pretrained
  truncated = tmp_path / "truncated.pth"
  with open(pretrained.resolve("efficientnet-lite0", "test"), "rb") as f:
    truncated.write_bytes(f.read(100_000))
  result = subprocess.run(command + [f"--weights={truncated}"], cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
  errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
  assert len(errors) == 1 and str(truncated) in errors[0], result.stderr[-3000:]
