"""When the loop logs, evaluates and checkpoints (a schedule of the config's intervals), and which intervals
are refused."""
import ml_collections
import pytest

from mmjax import errors
from mmjax.trainer import periodic


def _config(test_every: int = 5, **overrides) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      dict(total_steps=12, log_every_steps=4, checkpoint_every_steps=6, keep_checkpoints=2), **overrides,
      evals=dict(test=dict(every_steps=test_every), final=dict(every_steps=0))))


def test_work_due_after_each_step():
  schedule = periodic.Schedule.from_config(_config())
  due = {step: schedule.due(step) for step in range(1, 13)}
  assert [s for s, d in due.items() if d.log] == [4, 8, 12]
  assert [s for s, d in due.items() if d.checkpoint] == [6, 12]
  # Mid-run evals only; every evaluator runs after the last step, once its checkpoint is safe, and an eval
  # with every_steps=0 runs only then.
  assert {s: d.evals for s, d in due.items() if d.evals} == {5: ("test",), 10: ("test",)}


@pytest.mark.parametrize("overrides,message", [
    ({"log_every_steps": 0}, r"config.log_every_steps=0: each must be a positive integer"),
    ({"total_steps": 2.5, "keep_checkpoints": True}, r"config.total_steps=2.5, config.keep_checkpoints=True: each"),
    ({"test_every": -1}, r"config.evals.test.every_steps=-1: each must be an integer ≥ 0 \(0: "),
])
def test_bad_intervals_are_named(overrides, message):
  with pytest.raises(errors.ConfigError, match=message):
    periodic.Schedule.from_config(_config(**overrides))
