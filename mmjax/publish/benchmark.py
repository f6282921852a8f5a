"""The benchmark's tables (experiments/benchmark.py prints them) and its published results: the JSON lines of
one or more benchmark runs → `benchmark.jsonl` (the lines as printed), summary.json and table.md.

One table maker serves the terminal and the repository, so a published figure reads as the benchmark printed it.
"""
from __future__ import annotations

import json
import os
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from mmjax import errors
from mmjax.publish import store

RUNS_FILE = "benchmark.jsonl"
# (label, key of the benchmark's JSON, format) of the train benchmark's figures, in the order shown.
TRAIN_FIGURES = (
    ("batch size", "batch_size", ","), ("parameters", "params", ","),
    ("steps/s", "steps_per_s", ".3f"), ("examples/s", "examples_per_s", ".1f"),
    ("GFLOP/step (XLA cost analysis)", "gflop_per_step", ".2f"),
    ("GFLOP/step (analytic, matmuls)", "analytic_gflop_per_step", ".2f"),
    ("XLA / analytic", "xla_over_analytic_gflop", ".3f"), ("achieved GFLOP/s", "achieved_gflops", ".1f"),
    ("f32 matmul peak GFLOP/s", "peak_matmul_gflops", ".1f"), ("MFU", "mfu", ".3f"),
    ("compile s", "compile_s", ".1f"), ("page faults/step", "page_faults_per_step", ".0f"),
    ("system s/step", "system_s_per_step", ".3f"), ("cores busy", "cores_busy", ".2f"),
    ("step temporaries MiB", "step_temp_mb", ".0f"), ("peak RSS MiB", "peak_rss_mb", ".0f"),
    ("loader examples/s", "loader_examples_per_s", ".0f"),
    ("loader / training examples/s", "loader_over_training", ".1f"),
    ("freed memory kept in malloc", "keep_freed_memory", ""))
# (header, keys of a row, format) of the decode and memory benchmarks' columns: one key shows its value, two a
# range "low–high".
DECODE_COLUMNS = (
    ("new tokens", ("new_tokens",), "d"), ("cached ms/token, median", ("cached_ms_per_token",), ".3f"),
    ("cached, quartiles", ("cached_ms_per_token_q1", "cached_ms_per_token_q3"), ".3f"),
    ("cached, min–max", ("cached_ms_per_token_min", "cached_ms_per_token_max"), ".3f"),
    ("uncached ms/token, median", ("uncached_ms_per_token",), ".3f"),
    ("uncached, quartiles", ("uncached_ms_per_token_q1", "uncached_ms_per_token_q3"), ".3f"),
    ("cached tok/s", ("cached_tokens_per_s",), ".0f"), ("speedup", ("speedup",), ".1f"))
MEMORY_COLUMNS = (
    ("remat", ("remat",), ""), ("dtype", ("dtype",), ""), ("temp MiB", ("temp_mib",), ",.1f"),
    ("arguments MiB", ("argument_mib",), ",.1f"), ("outputs MiB", ("output_mib",), ",.1f"),
    ("donated MiB", ("alias_mib",), ",.1f"), ("total MiB", ("total_mib",), ",.1f"),
    ("largest batch", ("largest_batch",), ","), ("its total MiB", ("largest_batch_total_mib",), ",.1f"),
    ("compiles", ("compiles",), "d"))
LOADER_COLUMNS = (
    ("config", ("config",), ""), ("dataset", ("dataset",), ""), ("variant", ("variant",), ""), ("task", ("task",), ""),
    ("batch", ("batch_size",), ","), ("workers", ("worker_count",), "d"),
    ("loader examples/s", ("loader_examples_per_s",), ",.0f"), ("step examples/s", ("step_examples_per_s",), ",.0f"),
    ("loader / step", ("loader_over_step",), ".1f"))

SCALING_COLUMNS = (
    ("model", ("model",), ""), ("width", ("width",), "d"), ("depth", ("depth",), "d"), ("MLP", ("mlp_dim",), "d"),
    ("parameters", ("params",), ","), ("batch", ("batch_size",), "d"),
    ("GFLOP/step (analytic)", ("analytic_gflop_per_step",), ",.1f"), ("steps/s", ("steps_per_s",), ".3f"),
    ("examples/s", ("examples_per_s",), ",.1f"), ("ms/example", ("ms_per_example",), ".2f"),
    ("achieved GFLOP/s", ("achieved_gflops",), ".1f"), ("MFU", ("mfu",), ".3f"),
    ("step temp MiB", ("step_temp_mb",), ",.0f"))


def _shown(value: Any, spec: str) -> str:
  if value is None:
    return "—"
  if isinstance(value, bool):
    return "yes" if value else "no"
  return f"{value:{spec}}"


def _markdown(header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
  """A Markdown table whose first `left` columns are labels (left-aligned) and the rest figures."""
  align = "|" + "|".join([":--"] * left + ["--:"] * (len(header) - left)) + "|"
  return "\n".join(["| " + " | ".join(header) + " |", align, *("| " + " | ".join(row) + " |" for row in rows)]) + "\n"


def train_table(runs: Sequence[Mapping[str, Any]]) -> str:
  """The train benchmark's figures (rows) of each run (columns), and their median over ≥ 2 runs."""
  header = ["figure", *(["value"] if len(runs) == 1 else [f"run {i + 1}" for i in range(len(runs))]
                         + ["median"])]
  rows = []
  for label, key, spec in TRAIN_FIGURES:
    values = [run.get(key) for run in runs]
    if all(value is None for value in values):
      continue
    row = [label, *(_shown(value, spec) for value in values)]
    if len(runs) > 1:
      numbers = [value for value in values if isinstance(value, (int, float)) and not isinstance(value, bool)]
      row.append(_shown(statistics.median(numbers), spec) if numbers else "")
    rows.append(row)
  return _markdown(header, rows)


def _decode_settings(run: Mapping[str, Any]) -> str:
  decoder = ", ".join(f"{key}={value}" for key, value in run["decoder"].items())
  return f"batch {run['batch_size']}, decoder {decoder}"


def _cell(row: Mapping[str, Any], keys: Sequence[str], spec: str) -> str:
  values = [row.get(key) for key in keys]
  return "—" if None in values else "–".join(_shown(value, spec) for value in values)


def _rows_table(runs: Sequence[Mapping[str, Any]], rows: Sequence[Sequence[Mapping[str, Any]]],
                columns: Sequence[tuple[str, Sequence[str], str]], left: int) -> str:
  """A row per run and row of `rows` (each run's), with a run column when there are several runs; the first
  `left` columns are labels."""
  several = len(runs) > 1
  lines = [[*([str(i + 1)] if several else []), *(_cell(row, keys, spec) for _, keys, spec in columns)]
           for i, run_rows in enumerate(rows) for row in run_rows]
  return _markdown([*(["run"] if several else []), *(title for title, _, _ in columns)], lines, left + several)


def decode_table(runs: Sequence[Mapping[str, Any]]) -> str:
  """Per number of new tokens (a row per run and length), cached and uncached greedy decoding's median ms/token
  over the rounds and its spread (quartiles; min–max), and the runs' settings under it."""
  rows = [[{**row, "speedup": row["cached_tokens_per_s"] / row["uncached_tokens_per_s"]} for row in run["rows"]]
          for run in runs]
  settings = list(dict.fromkeys(_decode_settings(run) for run in runs))
  return (_rows_table(runs, rows, DECODE_COLUMNS, left=0) + "\nGreedy decoding of a random-weight decoder, "
          + "; ".join(settings) + ".\n")


def _memory_settings(run: Mapping[str, Any]) -> str:
  devices = f"{run['devices']} device{'s' * (run['devices'] != 1)}"
  return (f"batch {run['batch_size']:,}, {run['params']:,} parameters, {run['backend']} backend, {devices}; the "
          f"largest batch is a multiple of {run['batch_step']} within {run['budget_gib']:g} GiB per device")


def memory_table(runs: Sequence[Mapping[str, Any]]) -> str:
  """Per remat policy and compute dtype (a row per run), the compiled train step's bytes per device at the run's
  batch size, the largest batch within its budget, and what the figures are under it."""
  mib = ("temp", "argument", "output", "alias", "total", "largest_batch_total")
  rows = [[{**row, **{f"{name}_mib": None if row[f"{name}_bytes"] is None else row[f"{name}_bytes"] / 2**20
                      for name in mib}} for row in run["rows"]] for run in runs]
  settings = list(dict.fromkeys(_memory_settings(run) for run in runs))
  return (_rows_table(runs, rows, MEMORY_COLUMNS, left=2) + "\nXLA's memory analysis of the compiled train step "
          "(state donated), per device, at " + "; ".join(settings) + ". total = arguments + outputs − donated + "
          "temp. The largest batch was found by compiling the step (experiments/benchmark_memory.py).\n")


def loader_table(runs: Sequence[Mapping[str, Any]]) -> str:
  """A row per run (one config each): its training loader's and its train step's examples/s, and their ratio."""
  rounds = sorted({run["rounds"] for run in runs})
  return (_markdown([title for title, _, _ in LOADER_COLUMNS],
                    [[_cell(run, keys, spec) for _, keys, spec in LOADER_COLUMNS] for run in runs], left=4)
          + f"\nMedians over {'/'.join(map(str, rounds))} rounds, each timing the config's training loader "
          "(mmjax.data.train_loader) and then its train step fed the loader's batches, in one process "
          f"(experiments/benchmark_loader.py); the target is loader / step ≥ {runs[0]['target']}.\n")


def scaling_table(runs: Sequence[Mapping[str, Any]]) -> str:
  """A row per run and batch size or model variant: the train step's speed and cost per example."""
  timing = "; ".join(dict.fromkeys(f"the median of {run['windows']} windows of {run['window_steps']} steps"
                                   for run in runs))
  return (_rows_table(runs, [run["rows"] for run in runs], SCALING_COLUMNS, left=1)
          + f"\nThe real train step on random batches, float32, per row {timing}; MFU against a float32 matmul peak "
          "measured in the same row (experiments/benchmark_scaling.py).\n")


def profile_table(runs: Sequence[Mapping[str, Any]]) -> str:
  """Per run: the step's wall time by what was running, then its longest operations."""
  parts = []
  for run in runs:
    step = run["step_ms"]
    split = _markdown(["running", "ms/step", "share of the step"],
                      [[state, f"{ms:.1f}", f"{ms / step:.1%}"] for state, ms in run["timeline_ms"].items()])
    note = (f"Step {step:.1f} ms ({run['steps']} traced steps, {run['operations_per_step']:,.0f} operations each); "
            f"its matmuls: {run['matmul_gflop_per_step']:.1f} GFLOP at {run['matmul_gflops_while_running']:.1f} "
            f"GFLOP/s while any ran; operation time (overlaps counted twice): matmuls "
            f"{run['matmul_operation_ms']:.0f} ms, other {run['other_operation_ms']:.0f} ms.")
    longest = _markdown(["operation", "from", "ms/step", "GFLOP/s"],
                        [[op["operation"], op["source"], f"{op['ms']:.2f}", _shown(op["gflops"], ".1f")]
                         for op in run["top_operations"]], left=2)
    parts.append(f"{split}\n{note}\n\n{longest}")
  return "\n".join(parts)


TABLES = {"train": train_table, "decode": decode_table, "memory": memory_table, "loader": loader_table,
          "scaling": scaling_table, "profile": profile_table}


def benchmark_table(runs: Sequence[Mapping[str, Any]]) -> str:
  """The table of `runs`, the JSON results of one kind of benchmark."""
  return TABLES[runs[0]["benchmark"]](runs)


def read_runs(path: str) -> list[dict[str, Any]]:
  """The benchmark results in a file of the benchmark's output: each line that starts with "{" is one run's
  JSON (the printed tables and other lines are skipped, so the output can be saved as it is)."""
  runs = []
  try:
    with open(path) as f:
      lines = [(number, line.strip()) for number, line in enumerate(f, 1) if line.startswith("{")]
  except OSError as e:
    raise errors.InputError(f"--benchmark_json={path}: {e.strerror}.") from None
  for number, line in lines:
    try:
      run = json.loads(line)
    except json.JSONDecodeError as e:
      raise errors.InputError(f"{path}:{number} is not a JSON line of experiments.benchmark ({e.msg}).") from None
    if run.get("benchmark") not in TABLES:
      raise errors.InputError(f"{path}:{number} has no \"benchmark\": one of {sorted(TABLES)}: is it the "
                              "benchmark's output?")
    runs.append(run)
  kinds = sorted({run["benchmark"] for run in runs})
  if len(kinds) != 1:
    raise errors.InputError(f"--benchmark_json={path} holds " + (f"runs of several benchmarks {kinds}: publish "
                            "each in its own file." if kinds else "no JSON line of python -m experiments.benchmark."))
  return runs


def summarize(name: str, runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
  """summary.json of benchmark runs: the benchmark, the number of runs, each train figure's median (or each
  length's decode figures or each memory row, per run), the commands and the runs' provenance."""
  summary: dict[str, Any] = {"kind": "benchmark", "name": name, "benchmark": runs[0]["benchmark"], "runs": len(runs),
                             "commands": list(dict.fromkeys(run.get("command") for run in runs if run.get("command")))}
  if summary["benchmark"] == "train":
    summary["median"] = {key: store.finite_or_none(statistics.median(run[key] for run in runs))
                         for _, key, _ in TRAIN_FIGURES
                         if all(isinstance(run.get(key), (int, float)) and not isinstance(run.get(key), bool)
                                for run in runs)}
  elif summary["benchmark"] == "profile":
    summary["runs_detail"] = [{key: run[key] for key in ("step_ms", "timeline_ms", "matmul_gflops_while_running")}
                              for run in runs]
  elif summary["benchmark"] == "loader":
    summary["rows"] = [{key: run[key] for _, keys, _ in LOADER_COLUMNS for key in keys} for run in runs]
  else:
    summary["rows"] = [run["rows"] for run in runs]
  summary["provenance"] = store.provenance_summary(runs)
  return summary


def table(summary: Mapping[str, Any], runs: Sequence[Mapping[str, Any]]) -> str:
  """table.md: the benchmark's table of the runs, then the command(s) and the provenance line."""
  commands = (f"Measured by {store.commands_text(summary['commands'])}" if summary["commands"] else
              "Measured by a command not recorded")
  return benchmark_table(runs) + f"\n{commands}: {summary['runs']} run{'s' * (summary['runs'] != 1)}; " \
      f"{store.provenance_text(summary['provenance'])}.\n"


def _runs_jsonl(runs: Sequence[Mapping[str, Any]]) -> str:
  return "".join(json.dumps(run) + "\n" for run in runs)


def render(directory: str) -> dict[str, str]:
  """{file: text} of summary.json and table.md, made from the directory's benchmark.jsonl."""
  runs = read_runs(os.path.join(directory, RUNS_FILE))
  summary = summarize(os.path.basename(os.path.normpath(directory)), runs)
  return {store.SUMMARY_FILE: store.json_text(summary), store.TABLE_FILE: table(summary, runs)}


def publish(json_path: str, name: str, root: str) -> str:
  """Writes `<root>/experiments/results/<name>/` from the benchmark output in `json_path`: its JSON lines as
  benchmark.jsonl, summary.json and table.md. Returns the directory."""
  directory = store.results_dir(root, name)
  runs = read_runs(json_path)
  store.write_files(directory, {RUNS_FILE: _runs_jsonl(runs)})
  store.write_files(directory, render(directory))
  return directory
