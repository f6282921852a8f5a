"""The fake config and fake trainer of the ablation runner's tests: runs that take milliseconds."""
import dataclasses
import os
import sys
import textwrap

import pytest

from mmjax import ablation

# Sweep "grid": 2 fusions × 2 learning rates, plus a point the trainer rejects; sweep "one": a single point.
# Like a real config, it imports nothing from mmjax.
FAKE_CONFIG = textwrap.dedent("""
    def get_config(arg=None):
      raise NotImplementedError("The fake trainer does not load configs.")


    SWEEPS = {
        "grid": dict(
            points=[*({"fusion": fusion, "optim.lr": lr} for fusion in ("concat", "attention")
                      for lr in (0.001, 0.003)),
                    {"fusion": "bad", "optim.lr": 0.001}],
            metrics=["eval/test/accuracy"],
            columns="optim.lr",
            metric_names={"eval/test/accuracy": "Accuracy"},
        ),
        "one": dict(points=[{"fusion": "concat"}], metrics=["eval/test/accuracy"]),
    }
    """)

# Stands in for experiments.train: same command line, final metrics in <workdir>/final_metrics.json written
# atomically when it completes, a failure like a config error's. Its stdout is noise, JSON with other values
# included, which the runner must not read. FAKE_TRAIN_STOP exits 0 without final metrics (a run stopped on a
# signal); FAKE_TRAIN_ACCURACY sets the accuracy.
FAKE_TRAIN = textwrap.dedent("""
    import json, os, sys, time

    args = dict(arg.removeprefix("--").split("=", 1) for arg in sys.argv[1:])
    config_args = args["config"].partition(":")[2].split(",")
    with open(os.path.join(args["workdir"], "trained"), "a") as f:
      f.write(" ".join(sys.argv[1:]) + "\\n")
    time.sleep(float(os.environ.get("FAKE_TRAIN_SLEEP", "0")))
    print("train: 100%|####| {")
    print(json.dumps({"eval/test/accuracy": -1.0, "step": -1}, indent=1))
    if "fusion=bad" in config_args:
      print("Traceback (most recent call last):\\nerror: Unknown fusion 'bad'; known: ['attention', 'concat'].",
            file=sys.stderr)
      sys.exit(2)
    if os.environ.get("FAKE_TRAIN_STOP"):
      sys.exit(0)
    accuracy = (0.5 + 0.2 * ("fusion=attention" in config_args) + 10 * float(args.get("config.optim.lr", 0))
                + 0.01 * int(args["config.seed"]))
    metrics = {"step": 100, "eval/test/accuracy": float(os.environ.get("FAKE_TRAIN_ACCURACY", accuracy)),
               "train/loss": 1.5, "data_dir": args.get("config.data.data_dir", "")}
    path = os.path.join(args["workdir"], "final_metrics.json")
    with open(path + ".tmp", "w") as f:
      json.dump(metrics, f)
    os.replace(path + ".tmp", path)
    """)


@dataclasses.dataclass(frozen=True)
class Fake:
  """The fake config file, the command that runs the fake trainer, and a sweep workdir."""
  config: str
  train: tuple[str, ...]
  workdir: str

  def sweep(self, name: str = "grid") -> ablation.Sweep:
    return ablation.load_sweep(self.config, name)

  def run_dir(self, run_id: str) -> str:
    return os.path.join(self.workdir, "runs", run_id)

  def times_trained(self, run_id: str) -> int:
    """How often the fake trainer ran for `run_id`."""
    path = os.path.join(self.run_dir(run_id), "trained")
    if not os.path.exists(path):
      return 0
    with open(path) as f:
      return len(f.readlines())


@pytest.fixture
def fake(tmp_path) -> Fake:
  (tmp_path / "fake_config.py").write_text(FAKE_CONFIG)
  (tmp_path / "fake_train.py").write_text(FAKE_TRAIN)
  return Fake(str(tmp_path / "fake_config.py"), (sys.executable, str(tmp_path / "fake_train.py")),
              str(tmp_path / "work"))
