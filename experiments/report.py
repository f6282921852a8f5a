r"""Publishes measured results into the repository and keeps README's and docs' tables equal to them.

  python -m experiments.report --sweep_dir=runs/ablate_vqa_fusion --name=vqa_fusion_400
  python -m experiments.report --benchmark_json=bench_train.txt --name=bench_clip_s
  python -m experiments.report --timing_json=timing.txt --name=readme_test_command
  python -m experiments.report --table_json=photos.txt --name=photos_top5
  python -m experiments.report --sync
  python -m experiments.report --sync --check

`--sweep_dir`: an `experiments.ablate` workdir → `experiments/results/<name>/`: results.csv (the sweep's rows),
summary.json (the sweep, config, overrides, command, seeds; per point and metric the mean, std and n; the
commits, dates and machines of the runs) and table.md (the runner's table, then the provenance line). The sweep
is the one `ablate.json` records, or `--sweep` for a workdir that records none or several.
`--benchmark_json`: a file of `experiments.benchmark` output (its JSON lines; other lines are skipped, so
`python -m experiments.benchmark ... | tee bench.txt` will do) → benchmark.jsonl, summary.json, table.md.
`--timing_json`: a file of `experiments.time_readme` output (README's main or test command timed in a fresh clone)
→ its runs are added to timings.jsonl; summary.json and table.md list every run.
`--table_json`: the output of a script that prints its table as a JSON line (`experiments.classify_photos --json`)
→ table.jsonl, summary.json and table.md (the table as the script made it).
`--sync`: makes every results directory's summary.json and table.md again from its measurements, and rewrites
each section of README.md and docs/*.md between `<!-- results: <name> -->` and `<!-- /results: <name> -->`
with `experiments/results/<name>/table.md`. `--check` changes nothing and exits 1 naming what differs.
"""
import os
import sys

from absl import app, flags

from mmjax import errors, publish
from mmjax.publish import benchmark, sweep, table, timing

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_SWEEP_DIR = flags.DEFINE_string("sweep_dir", None, "The --workdir of an experiments.ablate sweep to publish.")
_SWEEP = flags.DEFINE_string("sweep", None, "With --sweep_dir: the sweep's name, if ablate.json does not say it.")
_BENCHMARK_JSON = flags.DEFINE_string("benchmark_json", None, "A file of experiments.benchmark output to publish.")
_TIMING_JSON = flags.DEFINE_string("timing_json", None, "A file of experiments.time_readme output to publish.")
_TABLE_JSON = flags.DEFINE_string("table_json", None, "A script's output with a table JSON line to publish.")
_NAME = flags.DEFINE_string("name", None, "The experiment's name: its directory experiments/results/<name>.")
_SYNC = flags.DEFINE_bool("sync", False, "Rewrite the results sections of README.md and docs/*.md.")
_CHECK = flags.DEFINE_bool("check", False, "With --sync: change nothing; exit 1 if a section or table differs.")
_ROOT = flags.DEFINE_string("root", REPO, "The repository to write into.")


def main(argv):
  del argv
  with errors.reported_to_user():
    chosen = [flag for flag, value in (("--sweep_dir", _SWEEP_DIR.value), ("--benchmark_json", _BENCHMARK_JSON.value),
                                       ("--timing_json", _TIMING_JSON.value), ("--table_json", _TABLE_JSON.value),
                                       ("--sync", _SYNC.value)) if value]
    if len(chosen) != 1:
      raise errors.InputError("Give one of --sweep_dir, --benchmark_json, --timing_json, --table_json or --sync "
                              f"(got {chosen or 'none'}).")
    if _CHECK.value and not _SYNC.value:
      raise errors.InputError("--check goes with --sync.")
    if _SWEEP.value and not _SWEEP_DIR.value:
      raise errors.InputError("--sweep goes with --sweep_dir.")
    if _SYNC.value:
      differences = publish.sync(_ROOT.value, check=_CHECK.value)
    else:
      if not _NAME.value:
        raise errors.InputError(f"{chosen[0]} needs --name=<experiment>, the directory experiments/results/<name>.")
      if _SWEEP_DIR.value:
        directory = sweep.publish(_SWEEP_DIR.value, _NAME.value, _ROOT.value, _SWEEP.value)
      elif _BENCHMARK_JSON.value:
        directory = benchmark.publish(_BENCHMARK_JSON.value, _NAME.value, _ROOT.value)
      elif _TIMING_JSON.value:
        directory = timing.publish(_TIMING_JSON.value, _NAME.value, _ROOT.value)
      else:
        directory = table.publish(_TABLE_JSON.value, _NAME.value, _ROOT.value)
  if not _SYNC.value:
    print(f"{os.path.relpath(directory, _ROOT.value)}: {', '.join(sorted(os.listdir(directory)))}. Include its table "
          f"with <!-- results: {_NAME.value} --> and <!-- /results: {_NAME.value} --> lines in README.md or "
          "docs/*.md, then run python -m experiments.report --sync.")
  elif not differences:
    print("README.md, docs/*.md and experiments/results/ match the published measurements.")
  elif not _CHECK.value:
    print("\n".join(f"rewrote {difference}" for difference in differences))
  else:
    print("\n".join(f"differs: {difference}" for difference in differences), file=sys.stderr)
    sys.exit("error: README.md/docs sections or results tables differ from the committed measurements: run "
             "python -m experiments.report --sync.")

if __name__ == "__main__":
  app.run(main, flags_parser=errors.parse_flags)
