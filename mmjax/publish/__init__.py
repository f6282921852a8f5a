r"""Measured results published into the repository, and the README/docs tables made from them.

  python -m experiments.report --sweep_dir=runs/ablate_vqa_fusion --name=vqa_fusion_400
  python -m experiments.report --benchmark_json=bench.txt --name=bench_clip_s
  python -m experiments.report --sync            # every marked section of README.md and docs/*.md
  python -m experiments.report --sync --check    # changes nothing; exits 1 naming what differs

A published experiment is a directory `experiments/results/<name>/` (see `store`): the measurements as they were
recorded (an ablation sweep's results.csv rows, or the benchmark's JSON lines), summary.json and table.md, made
from the measurements by the same code as the ablation runner's tables and the benchmark's printout, and ending
with the provenance of the runs (command, commit, date, machine: mmjax.provenance). README.md and docs/*.md include
a table between `<!-- results: <name> -->` and `<!-- /results: <name> -->`; `sync` rewrites those sections, and
a test fails when they differ from what the committed measurements give.

Modules: `store` (the results directory, provenance text), `sweep` (ablation sweeps), `benchmark` (the
benchmark's tables and runs), `markers` (README/docs sections: `sync`).
"""
from mmjax.publish.benchmark import benchmark_table, decode_table, train_table
from mmjax.publish.store import RESULTS_DIR, SUMMARY_FILE, TABLE_FILE
from mmjax.publish.markers import documents, replace_sections, sync

__all__ = ["RESULTS_DIR", "SUMMARY_FILE", "TABLE_FILE", "benchmark_table", "decode_table", "documents",
           "replace_sections", "sync", "train_table"]
