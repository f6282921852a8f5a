"""Tables and plot, on hand-made results rows."""
import math
import textwrap

import pytest

from mmjax import ablation, errors


def _row(point, seed, status="ok", **metrics):
  return {"run_id": ablation.run_id(point, seed), "seed": seed, "status": status, "error": "",
          **{key: repr(value) for key, value in metrics.items()}}


def test_tables_report_mean_std_best_and_missing_seeds(tmp_path):
  points = [{"fusion": fusion, "variant": variant} for fusion in ("concat", "cross_attn") for variant in ("a", "b")]
  sweep = ablation.Sweep(points, metrics=["eval/acc", "eval/loss"], columns="variant",
                         metric_names={"eval/acc": "Accuracy"}, lower_is_better=["eval/loss"])
  concat_a, concat_b, cross_a, cross_b = points
  rows = [
      *(_row(concat_a, s, **{"eval/acc": acc, "eval/loss": loss}) for s, acc, loss in
        [(0, 0.80, 2.0), (1, 0.82, 1.0), (2, 0.84, 3.0)]),
      *(_row(cross_a, s, **{"eval/acc": acc, "eval/loss": loss}) for s, acc, loss in
        [(0, 0.90, 4.0), (1, 0.92, 4.0), (2, 0.94, 4.0)]),
      _row(concat_b, 0, **{"eval/acc": 0.5, "eval/loss": 1.0}), _row(concat_b, 1, "failed"),
      _row(concat_b, 1, **{"eval/acc": 0.7, "eval/loss": 1.0}),  # A retry: the last row of a run counts.
      _row(concat_b, 2, "failed"),
      _row(cross_b, 0, "failed"), _row(cross_b, 7, **{"eval/acc": 1.0}),  # Seed 7 was not asked for.
  ]
  summary = ablation.summarize(sweep, rows, range(3))
  cell = summary.cells[0, 0, "eval/acc"]
  assert cell.values == (0.80, 0.82, 0.84) and cell.mean == pytest.approx(0.82) and cell.std == pytest.approx(0.02)
  assert summary.cells[0, 1, "eval/acc"].failed == 1 and math.isnan(summary.cells[1, 1, "eval/acc"].mean)
  assert ablation.markdown_table(summary) == textwrap.dedent("""\
      | fusion | variant=a / Accuracy | variant=a / eval/loss | variant=b / Accuracy | variant=b / eval/loss |
      |:--|--:|--:|--:|--:|
      | concat | 82.0 ± 2.0 | **2.00 ± 1.00** | 60.0 ± 14.1 (n=2) | 1.00 ± 0.00 (n=2) |
      | cross_attn | **92.0 ± 2.0** | 4.00 ± 0.00 | failed | failed |

      """) + ("Mean ± std over 3 seeds (0–2) of the finished runs (std with ddof=1; — for a single run); "
              "(n=k): only k of 3 seeds finished; failed: none did; pending: not run yet. Accuracy: ×100. Best "
              "mean per column in bold (lowest for eval/loss).\n")
  latex = ablation.latex_table(summary)
  assert r"\multicolumn{2}{c}{variant=a} & \multicolumn{2}{c}{variant=b} \\" in latex
  assert r"\cmidrule(lr){2-3}\cmidrule(lr){4-5}" in latex
  assert r"fusion & Accuracy & eval/loss & Accuracy & eval/loss \\" in latex
  assert r"cross\_attn & \textbf{92.0 $\pm$ 2.0} & 4.00 $\pm$ 0.00 & failed & failed \\" in latex
  assert latex.index(r"\toprule") < latex.index(r"\midrule") < latex.index(r"\bottomrule")

  one_seed = ablation.markdown_table(ablation.summarize(sweep, rows, [0]))
  # Variant b has a single cell with a value: nothing to be best against, so no bold.
  assert "| concat | 80.0 ± — | **2.00 ± —** | 50.0 ± — | 1.00 ± — |" in one_seed
  assert "| cross_attn | **90.0 ± —** | 4.00 ± — | failed | failed |" in one_seed
  pending = ablation.markdown_table(ablation.summarize(sweep, [], [0]))
  assert "| concat | pending | pending | pending | pending |" in pending
  no_columns = ablation.Sweep([{"v": "a"}, {"v": "b"}], metrics=["m"])
  rows = [_row({"v": "a"}, 0, m=0.5), _row({"v": "b"}, 0, m=0.25)]
  table = ablation.markdown_table(ablation.summarize(no_columns, rows, [0]))
  assert table.startswith("| v | m |\n|:--|--:|\n| a | **50.0 ± —** |\n| b | 25.0 ± — |\n")

  ablation.plot(summary, str(tmp_path / "plot.png"))
  with open(tmp_path / "plot.png", "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_reports_need_results(tmp_path):
  sweep = ablation.Sweep([{"v": "a"}], metrics=["m"])
  with pytest.raises(errors.UserError, match="has no results.csv: run the sweep first"):
    ablation.write_reports(sweep, str(tmp_path), [0])
