r"""Runs a config's ablation sweep over seeds and writes paper-style tables and a plot.

  python -m experiments.ablate --config=configs/av_digits.py --sweep=fusion --seeds=3 --workdir=runs/ablate_fusion
  python -m experiments.ablate --config=configs/av_digits.py:smoke --sweep=fusion --seeds=2 \
      --override=total_steps=200 --workdir=/tmp/ablate_smoke
  python -m experiments.ablate --config=configs/av_digits.py --sweep=fusion --seeds=3 \
      --workdir=runs/ablate_fusion --report_only

`--sweep` names an entry of the config file's `SWEEPS` dict, plain data beside `get_config`:

  SWEEPS = {
      "fusion": dict(
          points=[{"variant": "redundant", "fusion": "early"}, {"variant": "redundant", "fusion": "late_mean"}],
          metrics=["eval/test/accuracy", "eval/test/macro_f1"],
          columns="variant",                                # Optional: the point key of the column groups.
          metric_names={"eval/test/accuracy": "Accuracy"},  # Optional: display names.
          lower_is_better=[],                               # Optional: metrics whose lowest mean is best.
      ),
  }

A point's keys without a dot are get_config args (merged into those of `--config=file.py:args`), dotted
keys are config overrides (`"optim.lr": 3e-4`); see mmjax.ablation.Sweep. Every point is trained with
seeds seed_offset .. seed_offset+seeds-1, each run by `python -m experiments.train` in
`<workdir>/runs/<run_id>`, its result read from the `final_metrics.json` the run writes when it completes.
The workdir gets `results.csv` (one row per run: its point, seed, status, error, wall seconds, final step,
the commit, date and machine it ran on (mmjax.provenance), and its final metrics), `table.md`, `table.tex` and
`plot.png` (mean ± std per cell); `ablate.json` records the settings and every command line run in it.
`python -m experiments.report --sweep_dir=<workdir> --name=<experiment>` publishes the results into the repo.
Rerunning the same command skips finished runs and retries failed ones (`--noretry_failed` keeps
them); several processes may work on one workdir at once. Exits 1 if any run of the sweep failed.
"""
import sys

from absl import app, flags

from mmjax import ablation, errors, provenance

_CONFIG = flags.DEFINE_string("config", None, "Config file[:args] with a SWEEPS dict; the args are merged with "
                              "each point's get_config args (the point's value wins).")
_SWEEP = flags.DEFINE_string("sweep", None, "Name of the sweep: a key of the config's SWEEPS dict.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for the runs, results.csv, the tables and the plot.")
_SEEDS = flags.DEFINE_integer("seeds", 3, "Seeds per point: seed_offset .. seed_offset+seeds-1 (--config.seed).")
_SEED_OFFSET = flags.DEFINE_integer("seed_offset", 0, "The first seed.")
_OVERRIDE = flags.DEFINE_multi_string("override", [], "key=value: a --config.key=value override for every run, "
                                      "e.g. --override=total_steps=200 (a point's own value wins).")
_RETRY_FAILED = flags.DEFINE_bool("retry_failed", True, "Rerun runs whose latest row failed.")
_REPORT_ONLY = flags.DEFINE_bool("report_only", False, "Only rewrite the tables and the plot from results.csv.")
flags.mark_flags_as_required(["config", "sweep", "workdir"])


def main(argv):
  del argv
  with errors.reported_to_user():
    if _SEEDS.value < 1 or _SEED_OFFSET.value < 0:
      raise errors.ConfigError(f"--seeds={_SEEDS.value} must be ≥ 1 and --seed_offset={_SEED_OFFSET.value} ≥ 0.")
    sweep = ablation.load_sweep(_CONFIG.value, _SWEEP.value)
    seeds = range(_SEED_OFFSET.value, _SEED_OFFSET.value + _SEEDS.value)
    if _REPORT_ONLY.value:
      ablation.write_reports(sweep, _WORKDIR.value, seeds)
      rows = ablation.latest_rows(ablation.read_rows(_WORKDIR.value))
      rows = [rows[run.run_id] for run in ablation.plan(sweep, seeds) if run.run_id in rows]
    else:
      try:
        rows = ablation.run_sweep(sweep, _CONFIG.value, _WORKDIR.value, seeds,
                                  ablation.parse_overrides(_OVERRIDE.value), retry_failed=_RETRY_FAILED.value,
                                  sweep_name=_SWEEP.value,
                                  command=provenance.command_line("experiments.ablate", sys.argv))
      except KeyboardInterrupt:
        sys.exit("Interrupted: rerun the same command to resume (finished runs are kept; the interrupted one "
                 "continues from its last checkpoint).")
  failed = sum(row["status"] == ablation.FAILED for row in rows)
  total = len(ablation.plan(sweep, seeds))
  print(f"{_WORKDIR.value}: {sum(row['status'] == ablation.OK for row in rows)} of {total} runs ok, {failed} failed; "
        f"tables and plot in {', '.join(ablation.REPORT_FILES)}.")
  if failed:
    sys.exit(1)


if __name__ == "__main__":
  app.run(main, flags_parser=errors.parse_flags)
