r"""Times one of README's two commands as a new user would run it: a fresh clone, a fresh virtualenv.

  python -m experiments.time_readme --command=test | tee -a timing.txt
  python -m experiments.report --timing_json=timing.txt --name=readme_test_command

`--command=main` (README's first command: install, train the main job) or `test` (its second: install, lint, every
test). The command is read from README.md's "Two commands" section of the committed HEAD, cloned into a temporary
directory with a new virtualenv (`--fresh_venv`), and run there with its own temporary directory, so nothing a
previous run left (the tests' compilation cache, datasets in /tmp) helps it; pip's download cache and datasets
in the home directory (the main job's Shapes data) stay as the machine has them. Printed last: one JSON line —
wall, user and system CPU seconds, exit code, pytest's count and time, the load average before it started (a busy
machine makes any figure slower), and the provenance (mmjax.provenance) of the clone.
"""
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time

from absl import app, flags

from mmjax import errors, provenance
from mmjax.publish import timing

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_COMMAND = flags.DEFINE_enum("command", None, list(timing.COMMANDS), "Which of README's two commands to time.")
_FRESH_VENV = flags.DEFINE_bool("fresh_venv", True, "Run in a new virtualenv (else in this interpreter's env).")
_KEEP = flags.DEFINE_bool("keep", False, "Keep the clone and its log (their path is printed).")
_SECTION = "## Two commands"


def readme_commands(readme: str) -> dict[str, str]:
  """{"main": ..., "test": ...}: the first two ```bash blocks of README's "Two commands" section."""
  section = readme.partition(_SECTION)[2].split("\n## ", 1)[0]
  blocks = re.findall(r"^```bash\n(.*?)^```$", section, re.M | re.S)
  if not section or len(blocks) < 2:
    raise errors.InputError(f"README.md has no {_SECTION!r} section with two ```bash blocks: the commands to time.")
  return dict(zip(timing.COMMANDS, (" ".join(block.split()) for block in blocks)))


def pytest_summary(output: str) -> tuple[int | None, float | None]:
  """(passed, seconds) of pytest's last summary line (`=== 709 passed, 2 warnings in 393.12s (0:06:33) ===`)."""
  found = re.findall(r"^=+ (.*?\b(\d+) passed\b.*?) in ([\d.]+)s\b", output, re.M)
  if not found:
    return None, None
  return int(found[-1][1]), float(found[-1][2])


def time_command(which: str, fresh_venv: bool, keep: bool) -> dict:
  """Clones REPO's HEAD, runs README's `which` command in the clone and returns the JSON record of the run."""
  workdir = tempfile.mkdtemp(prefix="mmjax-time-readme-")
  clone, log_path = os.path.join(workdir, "clone"), os.path.join(workdir, "output.log")
  subprocess.run(["git", "clone", "-q", REPO, clone], check=True)
  with open(os.path.join(clone, "README.md")) as f:
    command = readme_commands(f.read())[which]
  env = dict(os.environ, TMPDIR=os.path.join(workdir, "tmp"))
  env.pop("PYTHONPATH", None)  # The clone's own install, never this checkout, is what runs.
  os.makedirs(env["TMPDIR"])
  if fresh_venv:
    venv = os.path.join(workdir, "venv")
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    env.update(VIRTUAL_ENV=venv, PATH=os.path.join(venv, "bin") + os.pathsep + env["PATH"])
    env.pop("PYTHONHOME", None)
  load_before = os.getloadavg()[0]
  before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
  with open(log_path, "w") as log:
    exit_code = subprocess.run(["bash", "-c", command], cwd=clone, env=env, stdout=log,
                               stderr=subprocess.STDOUT).returncode
  wall_s, after = time.monotonic() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
  with open(log_path, errors="replace") as f:
    passed, pytest_s = pytest_summary(f.read())
  record = {"readme_command": which, "command": command, "wall_s": round(wall_s, 1),
            "user_s": round(after.ru_utime - before.ru_utime, 1), "sys_s": round(after.ru_stime - before.ru_stime, 1),
            "exit_code": exit_code, "tests_passed": passed, "pytest_s": pytest_s, "load_before": round(load_before, 2),
            "fresh_venv": fresh_venv, "measured_by": f"python -m experiments.time_readme --command={which}",
            "commit": provenance.commit(clone), "date": provenance.utc_now(), "machine": provenance.machine()}
  if keep:
    print(f"clone and output: {workdir}", file=sys.stderr)
  else:
    shutil.rmtree(workdir, ignore_errors=True)
  return record


def main(argv):
  del argv
  with errors.reported_to_user():
    if _COMMAND.value is None:
      raise errors.InputError(f"Give --command={' or --command='.join(timing.COMMANDS)}: which README command to time.")
    record = time_command(_COMMAND.value, _FRESH_VENV.value, _KEEP.value)
  print(json.dumps(record), flush=True)
  if record["exit_code"]:
    sys.exit(f"error: README's {_COMMAND.value} command exited {record['exit_code']} (rerun with --keep to read its "
             "output).")


if __name__ == "__main__":
  app.run(main, flags_parser=errors.parse_flags)
