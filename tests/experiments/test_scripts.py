"""The scripts report bad input as one `error:` line and an exit code, without a traceback. A flag or config
error is reported before JAX is imported, so each case here costs a Python start, not a compile."""
import re
import subprocess
import sys

import pytest

from tests.helpers import REPO

# (case, script, flags, exit code, stderr regex).
BAD_COMMAND_LINES = [
    ("mistyped key", "train", ["--config.optim.lrr=1"], 2,
     r"""^error: Unknown config key 'lrr'. Did you mean "lr" instead of "lrr"\?$"""),
    ("wrong value type", "train", ["--config.optim.lr=fast"], 2, r"^error: .*fast"),
    ("unknown config arg", "train", ["--config=configs/shapes_clip.py:smok"], 2,
     r"^error: Unknown config arg 'smok' in 'smok'; known args: \['loss', 'smoke', 'steps'\]\.$"),
    ("config file that does not exist", "train", ["--config=configs/shapes_clp.py"], 2,
     r"^error: Cannot load the config file 'configs/shapes_clp.py': No such file or directory"),
    ("negative lr", "train", ["--config.optim.lr=-1"], 2, r"^error: config.optim.lr must be positive; got -1"),
    ("several processes without a coordinator", "train", ["--num_processes=2", "--process_id=0"], 2,
     r"^error: --num_processes=2 also needs --coordinator_address=<host:port of process 0>"),
    ("evaluate a directory that is no workdir", "evaluate", [], 1,
     r"^error: .*config.json does not exist: --workdir must be a directory written by experiments.train\.$"),
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


def test_classify_photos_names_the_espresso_and_reports_a_truncated_checkpoint_on_one_line(tmp_path):
  """The ImageNet head of the imported EfficientNet-Lite0 on the sample photos; then a .pth cut short."""
  command = [sys.executable, "-m", "experiments.classify_photos", "--top_k=1"]
  result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert re.search(r"coffee .*\n\s+9\d\.\d+%\s+espresso", result.stdout), result.stdout
  from mmjax import pretrained
  truncated = tmp_path / "truncated.pth"
  with open(pretrained.resolve("efficientnet-lite0", "test"), "rb") as f:
    truncated.write_bytes(f.read(100_000))
  result = subprocess.run(command + [f"--weights={truncated}"], cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
  errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
  assert len(errors) == 1 and str(truncated) in errors[0], result.stderr[-3000:]
