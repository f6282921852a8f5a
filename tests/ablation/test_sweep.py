"""Sweeps: their checks, run ids, the run plan, and loading a config file's SWEEPS dict."""
import pytest

from mmjax import ablation, errors


def test_run_ids_are_readable_and_filesystem_safe():
  run = ablation.Run({"fusion": "attention", "smoke": False, "optim.lr": 3e-4, "steps": 5}, seed=2)
  assert run.run_id == "fusion=attention,smoke=false,optim.lr=0.0003,steps=5,seed=2"
  assert run.label == "fusion=attention,smoke=false,optim.lr=0.0003,steps=5 seed=2"
  assert ablation.Run({}, 0).label == "(base config) seed=0"
  assert ablation.run_id({"split": "test[:64]"}, 0) == "split=test__64_,seed=0"
  long_a, long_b = ablation.run_id({"name": "x" * 200 + "a"}, 0), ablation.run_id({"name": "x" * 200 + "b"}, 0)
  assert len(long_a) <= 150 and long_a != long_b


@pytest.mark.parametrize("kwargs, message", [
    (dict(points=[{"a": 1}, {"b": 2}], metrics=["m"], columns="a"), "lacks the columns key 'a'"),
    (dict(points=[{"a": 1}, {"a": 1}], metrics=["m"]), "repeat"),
    (dict(points=[{"a": 1}], metrics=["m"], metric_names={"n": "N"}), r"not in it: \['n'\]"),
    (dict(points=[{"seed": 1}], metrics=["m"]), "other than"),
    (dict(points=[{"a": "x,y"}], metrics=["m"]), "no comma"),
    (dict(points=[], metrics=["m"]), "at least one point"),
    (dict(points=[{"a": 1}], metrics="m"), "metrics='m': give a list, not a string"),
    (dict(points=[{"a": 1}, "b=2"], metrics=["m"]), "each point is a dict"),
])
def test_bad_sweeps_name_the_problem(kwargs, message):
  with pytest.raises(errors.ConfigError, match=message):
    ablation.Sweep(**kwargs)


def test_load_sweep_builds_the_sweep_of_the_sweeps_dict_and_plans_seed_major(fake):
  sweep = ablation.load_sweep(fake.config + ":smoke", "grid")
  assert sweep == ablation.Sweep(
      [*({"fusion": fusion, "optim.lr": lr} for fusion in ("concat", "attention") for lr in (0.001, 0.003)),
       {"fusion": "bad", "optim.lr": 0.001}],
      metrics=("eval/test/accuracy",), columns="optim.lr", metric_names={"eval/test/accuracy": "Accuracy"})
  assert sweep.row_keys == ("fusion",) and sweep.metric_name("eval/test/accuracy") == "Accuracy"
  runs = ablation.plan(sweep, [3, 4])
  assert [run.seed for run in runs] == [3] * 5 + [4] * 5 and runs[5].point == sweep.points[0]


def test_load_sweep_names_what_is_wrong_with_the_config_file(fake, tmp_path):
  def load(text: str, name: str = "x"):
    (tmp_path / "config.py").write_text(text)
    return ablation.load_sweep(str(tmp_path / "config.py") + ":smoke", name)

  with pytest.raises(errors.ConfigError, match=r"Unknown sweep 'nope' \(SWEEPS of .*fake_config.py\); "
                                               r"known: \['grid', 'one'\]\."):
    ablation.load_sweep(fake.config, "nope")
  with pytest.raises(errors.ConfigError, match=r"config.py has no SWEEPS dict; define SWEEPS = \{name: "
                                               r"dict\(points=\.\.\., metrics=\.\.\.\)\} beside get_config\.$"):
    load("def sweep(name):\n  return [{'optim.lr': 0.1}]\n")  # The old way: a function, not data.
  with pytest.raises(errors.ConfigError, match="has no SWEEPS dict"):
    load("SWEEPS = [dict(points=[{'a': 1}], metrics=['m'])]\n")
  with pytest.raises(errors.ConfigError, match=r"SWEEPS\['x'\] in .*config.py: unknown keys \['colums'\]; the keys "
                                               r"are \['points', 'metrics', 'columns', 'metric_names', "
                                               r"'lower_is_better'\] \(points and metrics required\)\.$"):
    load("SWEEPS = {'x': dict(points=[{'a': 1}], metrics=['m'], colums='a')}\n")
  with pytest.raises(errors.ConfigError, match=r": unknown keys \['metric'\] and missing keys \['metrics'\]; "):
    load("SWEEPS = {'x': dict(points=[{'a': 1}], metric=['m'])}\n")
  with pytest.raises(errors.ConfigError, match=r"SWEEPS\['x'\] in .*config.py is a list"):
    load("SWEEPS = {'x': [{'a': 1}]}\n")
  with pytest.raises(errors.ConfigError, match=r"SWEEPS\['x'\] in .*config.py: Sweep point .* lacks the columns "
                                               "key 'b'"):
    load("SWEEPS = {'x': dict(points=[{'a': 1}], metrics=['m'], columns='b')}\n")
  with pytest.raises(errors.ConfigError, match="missing.py is not a file"):
    ablation.load_sweep(str(tmp_path / "missing.py"), "x")
