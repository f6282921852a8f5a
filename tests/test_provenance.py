"""Provenance fields: the commit of the code (dirty or not, unknown outside its own checkout), the UTC date, the
machine, the command line."""
import datetime
import os
import re
import subprocess

from mmjax import provenance
from tests.helpers import REPO


def _git(root, *args: str) -> str:
  return subprocess.run(["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t", *args], check=True,
                        capture_output=True, text=True).stdout.strip()


def test_commit_is_head_dirty_only_for_tracked_changes_and_unknown_outside_the_checkout(tmp_path):
  root = tmp_path / "repo"
  root.mkdir()
  _git(root, "init", "-q")
  (root / "code.py").write_text("a = 1\n")
  _git(root, "add", "code.py")
  _git(root, "commit", "-q", "-m", "first")
  head = _git(root, "rev-parse", "HEAD")
  assert provenance.commit(str(root)) == head
  (root / "notes.txt").write_text("untracked files are not the code that ran\n")
  assert provenance.commit(str(root)) == head
  (root / "code.py").write_text("a = 2\n")
  assert provenance.commit(str(root)) == head + "+dirty"
  # A folder inside some other checkout (an installed package in a venv kept in a repo) is not that repo's code.
  (root / "site-packages").mkdir()
  assert provenance.commit(str(root / "site-packages")) == provenance.UNKNOWN
  assert provenance.commit(str(tmp_path)) == provenance.UNKNOWN
  assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", provenance.commit())  # This checkout, the mmjax package's.
  assert provenance.CODE_ROOT == REPO


def test_date_machine_and_command_line():
  before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
  record = provenance.record("abc+dirty")
  date = datetime.datetime.strptime(record["date"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
  assert before <= date <= datetime.datetime.now(datetime.timezone.utc)
  assert tuple(record) == provenance.KEYS and record["commit"] == "abc+dirty"
  assert record["machine"] == f"{provenance.cpu_model()}, {provenance.cores()} cores"
  assert provenance.cpu_model() not in ("", provenance.UNKNOWN) and 1 <= provenance.cores() <= os.cpu_count()
  if os.path.exists("/proc/cpuinfo"):
    with open("/proc/cpuinfo") as f:
      names = [line.partition(":")[2].strip() for line in f if line.startswith("model name")]
    assert not names or provenance.cpu_model() == " ".join(names[0].split())
  assert provenance.command_line("experiments.ablate", ["/repo/experiments/ablate.py", "--config=a.py:x=1,y",
                                                        "--override=data.name=two words"]) == (
      "python -m experiments.ablate --config=a.py:x=1,y '--override=data.name=two words'")
