r"""Paper-style ablations: a sweep of a config's `SWEEPS` dict × seeds, one training subprocess per run,
every run's result in `results.csv`, and tables and a plot made from that file alone.

  python -m experiments.ablate --config=configs/av_digits.py --sweep=fusion --seeds=3 --workdir=runs/ablate

A config file lists its sweeps as plain data beside `get_config` (configs import nothing from mmjax):

  SWEEPS = {
      "fusion": dict(points=[{"fusion": "early"}, {"fusion": "cross_attention", "optim.lr": 3e-4}],
                     metrics=["eval/test/accuracy"], columns=None, metric_names={}, lower_is_better=[]),
  }

and `load_sweep` makes `Sweep(**SWEEPS[name])` of it, where every check of a sweep lives (see `Sweep` for
what the keys mean; `columns`, `metric_names` and `lower_is_better` are optional).

Each run is `python -m experiments.train` in `<workdir>/runs/<run_id>` (its training workdir, with
its output in `ablate.log`): a crash, an out-of-memory kill or an XLA abort ends that run only, and
is recorded as a failed row with its error while the sweep goes on. A run's metrics are those of the
`final_metrics.json` it writes when it completes; a run that exits without it is a failed row. Runs
go seed-major (every point with the first seed, then the second seed, ...) so a partial sweep
already fills the table.

Restarting resumes: runs whose latest row is ok are skipped, failed ones are retried (each retry
resumes from the run's newest checkpoint). Several `ablate` processes may share a workdir: a run
is claimed by creating `ablate.claim` (pid, host) in its directory — a claim left by a dead
process is taken over — and `results.csv` is only changed under a lock file, by rewriting it
whole and renaming it into place. When a run has several rows (a failure, then a retry), the
last one counts. `ablate.json` records the config and overrides the runs are trained with, so a
restart with other ones is an error rather than a table of incomparable runs, and the command lines that
ran the sweep. Each row records its provenance (mmjax.provenance): the commit of the code that ran, the
date it finished and the machine; `python -m experiments.report` publishes a sweep with them into the repo.

Modules: `sweep` (the grid and its runs), `results` (results.csv, claims, settings), `runner`
(subprocesses), `report` (tables and plot).
"""
from mmjax.ablation.report import (REPORT_FILES, Cell, Summary, latex_table, markdown_table, plot, summarize,
                                   write_reports)
from mmjax.ablation.results import CLAIM_FILE, FAILED, OK, RESULTS_FILE, SETTINGS_FILE, latest_rows, read_rows
from mmjax.ablation.runner import (FINAL_METRICS_FILE, RUN_LOG, TRAIN_COMMAND, error_message, parse_overrides,
                                   result_row, run_sweep, train_command)
from mmjax.ablation.sweep import RESERVED_KEYS, Run, Sweep, format_value, load_sweep, plan, point_label, run_id

__all__ = [
    "CLAIM_FILE", "FAILED", "FINAL_METRICS_FILE", "OK", "REPORT_FILES", "RESERVED_KEYS", "RESULTS_FILE", "RUN_LOG",
    "SETTINGS_FILE", "TRAIN_COMMAND", "Cell", "Run", "Summary", "Sweep", "error_message", "format_value",
    "latest_rows", "latex_table", "load_sweep", "markdown_table", "parse_overrides", "plan", "plot", "point_label",
    "read_rows", "result_row", "run_id", "run_sweep", "summarize", "train_command", "write_reports",
]
