"""End to end: the smoke config trains from the command line, learns, and evaluates."""
import json
import os

import pytest

from tests.helpers import read_metrics, run_module

# One worker trains the shared contrastive smoke run (conftest.clip_smoke_run) for both modules.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("clip_smoke")]


@pytest.fixture
def smoke_workdir(clip_smoke_run):
  return clip_smoke_run


def test_workdir_contents(smoke_workdir):
  workdir, _ = smoke_workdir
  with open(os.path.join(workdir, "config.json")) as f:
    assert json.load(f)["total_steps"] == 60
  assert any(name.startswith("events.out.tfevents") for name in os.listdir(os.path.join(workdir, "tensorboard")))
  steps = [row["step"] for row in read_metrics(workdir) if "train/loss" in row]
  assert steps == list(range(10, 61, 10))


def test_loss_goes_down(smoke_workdir):
  workdir, _ = smoke_workdir
  losses = [row["train/loss"] for row in read_metrics(workdir) if "train/loss" in row]
  assert losses[-1] < 0.7 * losses[0], losses


def test_retrieval_beats_chance(smoke_workdir):
  _, final = smoke_workdir
  for direction in ("i2t", "t2i"):
    r1 = final[f"eval/test/{direction}_r1"]
    assert r1 > 5 * final["eval/test/chance_r1"], (direction, r1, final["eval/test/chance_r1"])
  assert final["eval/test/num_candidates"] == 512
  assert final["eval/zeroshot_colour/accuracy"] > 2 * final["eval/zeroshot_colour/chance"]


def test_evaluate_script_reproduces_final_metrics(smoke_workdir):
  workdir, final = smoke_workdir
  result = run_module("experiments.evaluate", f"--workdir={workdir}")
  metrics = json.loads(result.stdout[result.stdout.index("{"):])
  assert metrics["step"] == 60
  for key in ("eval/test/i2t_r1", "eval/heldout/t2i_r5", "eval/zeroshot_colour/accuracy"):
    assert metrics[key] == pytest.approx(final[key], abs=1e-6), key
