"""Tables (markdown, LaTeX) and a plot of a sweep, made from `results.csv` rows alone.

Per cell: the mean ± std over the seeds of the ok runs (std with ddof=1; "—" for a single run). A
metric whose every value lies in [0, 1] (accuracy, recall, F1) is shown ×100 with one decimal; any
other (and the runs' wall seconds, "wall_s") with three significant digits of its largest mean. The
best mean per column is in bold: the highest, or the lowest for metrics in `Sweep.lower_is_better`.
"""
from __future__ import annotations

import dataclasses
import math
import os
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from mmjax import errors
from mmjax.ablation.results import FAILED, OK, RESULTS_FILE, Row, latest_rows, read_rows, replace_file, write_text
from mmjax.ablation.sweep import RESERVED_KEYS, Sweep, format_value, run_id

REPORT_FILES = ("table.md", "table.tex", "plot.png")


@dataclasses.dataclass(frozen=True)
class Cell:
  """One table cell: a metric of one point over the requested seeds."""
  values: tuple[float, ...]  # Of the ok runs, in seed order.
  failed: int                # Runs whose latest row failed (or lacks the metric).
  expected: int              # Seeds requested.

  @property
  def mean(self) -> float:
    return statistics.fmean(self.values) if self.values else math.nan

  @property
  def std(self) -> float:
    return statistics.stdev(self.values) if len(self.values) >= 2 else math.nan


@dataclasses.dataclass(frozen=True)
class Summary:
  """What the tables and the plot show, computed from results rows only."""
  sweep: Sweep
  seeds: tuple[int, ...]
  rows: tuple[tuple[str, ...], ...]     # One label per `sweep.row_keys`, in the sweep's point order.
  groups: tuple[str | None, ...]        # Values of `sweep.columns`; (None,) without columns.
  cells: Mapping[tuple[int, int, str], Cell]  # (row, group, metric); absent: no such point.
  scale: Mapping[str, float]            # 100 for a metric shown ×100.
  decimals: Mapping[str, int]

  def shown(self, value: float, metric: str) -> str:
    return f"{value * self.scale[metric]:.{self.decimals[metric]}f}"

  def is_best(self, row: int, group: int, metric: str) -> bool:
    """Whether this cell's shown mean is the column's best (ties are all best), among ≥ 2 cells."""
    means = {r: float(self.shown(cell.mean, metric)) for (r, g, m), cell in self.cells.items()
             if g == group and m == metric and cell.values}
    if len(means) < 2 or row not in means:
      return False
    best = (min if metric in self.sweep.lower_is_better else max)(means.values())
    return means[row] == best


def _float(value: Any) -> float:
  try:
    return float(value)
  except (TypeError, ValueError):
    return math.nan


def ok_values(rows: Iterable[Row | None], metric: str) -> tuple[float, ...]:
  """The finite values of `metric` in the ok rows of `rows` (None for a run without a row), in order: what a
  cell's statistics are computed from."""
  values = [_float(row.get(metric)) for row in rows if row is not None and row.get("status") == OK]
  return tuple(value for value in values if math.isfinite(value))


def summarize(sweep: Sweep, rows: Iterable[Row], seeds: Sequence[int]) -> Summary:
  """The per-cell statistics of `rows` (results.csv rows; the last row of a run counts) for the
  runs of `sweep` × `seeds`; rows of other runs are ignored."""
  latest = latest_rows(rows)
  labels: dict[tuple[str, ...], None] = {}
  groups: dict[str | None, None] = {}
  cells = {}
  for point in sweep.points:
    label = tuple(format_value(point[key]) if key in point else "" for key in sweep.row_keys)
    group = format_value(point[sweep.columns]) if sweep.columns else None
    labels.setdefault(label)
    groups.setdefault(group)
    found = [latest.get(run_id(point, seed)) for seed in seeds]
    for metric in sweep.metrics:
      values = ok_values(found, metric)
      attempted = sum(row is not None for row in found)
      cells[list(labels).index(label), list(groups).index(group), metric] = Cell(
          values, attempted - len(values), len(seeds))
  scale, decimals = {}, {}
  for metric in sweep.metrics:
    values = [v for (_, _, m), cell in cells.items() if m == metric for v in cell.values]
    # Bookkeeping columns (wall seconds) are never fractions, however short the runs.
    fraction = metric not in RESERVED_KEYS and bool(values) and all(0 <= v <= 1 for v in values)
    largest = max((abs(cell.mean) for (_, _, m), cell in cells.items() if m == metric and cell.values), default=0)
    scale[metric] = 100.0 if fraction else 1.0
    # One decimal for percentages; else three significant digits of the largest mean.
    decimals[metric] = 1 if fraction else (min(4, max(0, 2 - math.floor(math.log10(largest)))) if largest else 2)
  return Summary(sweep, tuple(seeds), tuple(labels), tuple(groups), cells, scale, decimals)


def _seed_text(seeds: Sequence[int]) -> str:
  return f"1 seed ({seeds[0]})" if len(seeds) == 1 else f"{len(seeds)} seeds ({seeds[0]}–{seeds[-1]})"


def _caption(summary: Summary, plus_minus: str, dash: str) -> str:
  sweep, seeds = summary.sweep, summary.seeds
  scaled = [sweep.metric_name(m) for m in sweep.metrics if summary.scale[m] != 1]
  lower = [sweep.metric_name(m) for m in sweep.lower_is_better]
  partial = f" (n=k): only k of {len(seeds)} seeds finished;" if len(seeds) > 1 else ""
  return (f"Mean {plus_minus} std over {_seed_text(seeds)} of the finished runs (std with ddof=1; {dash} for "
          f"a single run);{partial} failed: none did; pending: not run yet."
          + (f" {', '.join(scaled)}: ×100." if scaled else "")
          + " Best mean per column in bold" + (f" (lowest for {', '.join(lower)})." if lower else "."))


def _cell_text(summary: Summary, key: tuple[int, int, str], plus_minus: str, dash: str,
               bold: Callable[[str], str]) -> str:
  cell = summary.cells.get(key)
  if cell is None:
    return ""
  if not cell.values:
    return FAILED if cell.failed else "pending"
  metric = key[2]
  std = dash if len(cell.values) < 2 else summary.shown(cell.std, metric)
  text = f"{summary.shown(cell.mean, metric)} {plus_minus} {std}"
  text = bold(text) if summary.is_best(*key) else text
  return text + (f" (n={len(cell.values)})" if len(cell.values) < cell.expected else "")


def _group_title(summary: Summary, group: str | None) -> str:
  return f"{summary.sweep.columns}={group}"


def markdown_table(summary: Summary) -> str:
  """A GitHub markdown table (rows: the row keys' values; columns: groups × metrics) and its caption."""
  sweep = summary.sweep

  def escape(text: str) -> str:
    return text.replace("|", r"\|")

  keys = [(g, m) for g in range(len(summary.groups)) for m in sweep.metrics]
  header = [*sweep.row_keys, *(sweep.metric_name(m) if summary.groups == (None,)
                              else f"{_group_title(summary, summary.groups[g])} / {sweep.metric_name(m)}"
                              for g, m in keys)]
  lines = ["| " + " | ".join(map(escape, header)) + " |",
           "|" + "|".join([":--"] * len(sweep.row_keys) + ["--:"] * len(keys)) + "|"]
  for r, labels in enumerate(summary.rows):
    cells = [*labels, *(_cell_text(summary, (r, g, m), "±", "—", lambda t: f"**{t}**") for g, m in keys)]
    lines.append("| " + " | ".join(map(escape, cells)) + " |")
  return "\n".join(lines) + "\n\n" + _caption(summary, "±", "—") + "\n"


def _latex_escape(text: str) -> str:
  replacements = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
  return "".join(replacements.get(char, char) for char in text)


def latex_table(summary: Summary) -> str:
  """The markdown table's content as a booktabs `tabular`, the caption in a comment above it."""
  sweep = summary.sweep
  n_keys, n_metrics = len(sweep.row_keys), len(sweep.metrics)
  keys = [(g, m) for g in range(len(summary.groups)) for m in sweep.metrics]
  lines = [f"% {_caption(summary, '±', '—')}", r"% Needs \usepackage{booktabs}.",
           rf"\begin{{tabular}}{{{'l' * n_keys}{'r' * len(keys)}}}", r"\toprule"]
  if summary.groups != (None,):
    titles = [rf"\multicolumn{{{n_metrics}}}{{c}}{{{_latex_escape(_group_title(summary, group))}}}"
              for group in summary.groups]
    lines.append(" & ".join([""] * n_keys + titles) + r" \\")
    lines.append("".join(rf"\cmidrule(lr){{{n_keys + 1 + g * n_metrics}-{n_keys + (g + 1) * n_metrics}}}"
                         for g in range(len(summary.groups))))
  header = [*sweep.row_keys, *(sweep.metric_name(m) for _, m in keys)]
  lines += [" & ".join(map(_latex_escape, header)) + r" \\", r"\midrule"]
  for r, labels in enumerate(summary.rows):
    cells = [*map(_latex_escape, labels),
             *(_cell_text(summary, (r, g, m), r"$\pm$", "--", lambda t: rf"\textbf{{{t}}}") for g, m in keys)]
    lines.append(" & ".join(cells) + r" \\")
  lines += [r"\bottomrule", r"\end{tabular}"]
  return "\n".join(lines) + "\n"


def plot(summary: Summary, path: str) -> None:
  """Grouped bars (one subplot per metric, x: rows, one colour per column group), std error bars, as PNG."""
  from matplotlib.figure import Figure  # Not pyplot: no global backend to set, and imported only when plotting.

  sweep = summary.sweep
  n_rows, n_groups = len(summary.rows), len(summary.groups)
  width = max(3.5, 1.0 + n_rows * (0.3 + 0.35 * n_groups))
  figure = Figure(figsize=(width * len(sweep.metrics), 3.8))
  axes = figure.subplots(1, len(sweep.metrics), squeeze=False)[0]
  bar = 0.8 / n_groups
  tick_labels = [", ".join(labels) or "all" for labels in summary.rows]
  for ax, metric in zip(axes, sweep.metrics, strict=True):
    scale = summary.scale[metric]
    for g, group in enumerate(summary.groups):
      cells = [summary.cells.get((r, g, metric)) for r in range(n_rows)]
      means = [cell.mean * scale if cell else math.nan for cell in cells]
      stds = [cell.std * scale if cell else math.nan for cell in cells]  # NaN (one run): no error bar.
      positions = [r + (g - (n_groups - 1) / 2) * bar for r in range(n_rows)]
      ax.bar(positions, means, bar, yerr=stds, capsize=3, label=group)
      for position, cell in zip(positions, cells, strict=True):
        if cell and not cell.values:
          ax.text(position, 0, FAILED if cell.failed else "pending", rotation=90, ha="center", va="bottom",
                  fontsize="x-small")
    name = sweep.metric_name(metric)
    ax.set_title(name)
    ax.set_ylabel(name + (" (×100)" if scale != 1 else ""))
    ax.set_xlabel(", ".join(sweep.row_keys))
    long_labels = sum(map(len, tick_labels)) > 8 * n_rows
    ax.set_xticks(range(n_rows), tick_labels, rotation=25 if long_labels else 0,
                  ha="right" if long_labels else "center")
    ax.grid(axis="y", alpha=0.3)
  if summary.groups != (None,):
    axes[-1].legend(title=sweep.columns, fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
  figure.suptitle(f"Mean ± std over {_seed_text(summary.seeds)}", fontsize="medium")
  figure.tight_layout()
  figure.savefig(path, dpi=120, format="png", bbox_inches="tight")  # "tight" keeps the legend beside the axes.


def write_reports(sweep: Sweep, workdir: str, seeds: Sequence[int]) -> Summary:
  """Writes table.md, table.tex and plot.png from `<workdir>/results.csv` (each replaced whole)."""
  if not os.path.exists(os.path.join(workdir, RESULTS_FILE)):
    raise errors.UserError(f"{workdir} has no {RESULTS_FILE}: run the sweep first (without --report_only).")
  summary = summarize(sweep, read_rows(workdir), seeds)
  write_text(os.path.join(workdir, "table.md"), markdown_table(summary))
  write_text(os.path.join(workdir, "table.tex"), latex_table(summary))
  replace_file(os.path.join(workdir, "plot.png"), lambda temporary: plot(summary, temporary))
  return summary
