"""The CMU-MOSI score metrics (MAE, Pearson, Acc-2) and per-subset outputs of the evaluators' pass."""
import numpy as np
import pytest
from scipy import stats

from mmjax.evaluators import common, score_metrics


def test_score_metrics_by_hand_and_against_scipy():
  targets = np.array([-2.0, -1.0, 0.0, 1.0, 2.5])
  predicted = np.array([-1.5, 0.5, 0.3, 1.0, 1.5])
  metrics = score_metrics(predicted, targets)
  assert metrics["score_mae"] == pytest.approx((0.5 + 1.5 + 0.3 + 0.0 + 1.0) / 5)
  assert metrics["score_corr"] == pytest.approx(stats.pearsonr(predicted, targets).statistic)
  # Acc-2 over the 4 non-neutral targets: signs agree for −2 (−1.5), 1 (1.0) and 2.5 (1.5), not for −1 (0.5).
  assert metrics["acc2"] == pytest.approx(3 / 4)


def test_score_metrics_undefined_cases_are_nan_not_flattering():
  constant = score_metrics(np.zeros(4), np.array([-1.0, 0.0, 1.0, 2.0]))
  assert np.isnan(constant["score_corr"]) and constant["acc2"] == pytest.approx(1 / 3)
  assert np.isnan(score_metrics(np.array([0.1, -0.2]), np.zeros(2))["acc2"])


def test_predict_over_keeps_dict_outputs_row_aligned_and_drops_padding():
  rows = {"x": np.arange(5, dtype=np.float32)}
  batches = common.process_batches(rows, batch_size=2)  # 3 batches, the last with one padding row.
  outputs, fields = common.predict_over(batches, lambda b: {"label": np.asarray(b["x"]).astype(int) % 2,
                                                            "score": 2 * np.asarray(b["x"])},
                                        to_device=lambda b: b, keep=("x",))
  np.testing.assert_array_equal(outputs["label"], [0, 1, 0, 1, 0])
  np.testing.assert_array_equal(outputs["score"], [0, 2, 4, 6, 8])
  np.testing.assert_array_equal(fields["x"], rows["x"])


def test_a_subset_s_macro_f1_averages_the_classes_it_has():
  from mmjax.evaluators import classification_metrics
  labels, predicted = np.array([0, 0, 2, 2]), np.array([0, 1, 2, 2])
  # Class 0: P=1, R=1/2 → 2/3; class 2: F1 1; class 1 (absent, predicted once) is not averaged but cost class 0.
  assert classification_metrics(predicted, labels, 3, classes=np.array([0, 2]))["macro_f1"] == pytest.approx(5 / 6)
  assert classification_metrics(predicted, labels, 3)["macro_f1"] == pytest.approx(5 / 9)
