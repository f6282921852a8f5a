"""How user errors reach the person: one line on stderr and an exit code."""
import ml_collections
import pytest

from mmjax import errors


def test_user_errors_exit_with_their_code_and_message(capsys):
  for error, code in ((errors.ConfigError("bad key"), 2), (errors.NonFiniteError("diverged"), 1)):
    with pytest.raises(SystemExit) as exited:
      with errors.reported_to_user():
        raise error
    assert exited.value.code == code
    assert capsys.readouterr().err == f"error: {error}\n"


def test_lookup_names_what_was_asked_for_and_lists_the_known_names():
  assert errors.lookup({"a": 1, "b": 2}, "b", "fusion") == 2
  with pytest.raises(errors.ConfigError, match=r"^Unknown fusion 'c' \(config.model.fusion\); known: \['a', 'b'\]\.$"):
    errors.lookup({"b": 2, "a": 1}, "c", "fusion", "config.model.fusion")
  with pytest.raises(errors.ConfigError, match=r"^Unknown head 'x'; known: \['decoder', 'classifier'\]\.$"):
    errors.check_choice("x", ("decoder", "classifier"), "head")


@pytest.mark.parametrize("override,message", [
    ("--config.decode.beam_size=4",
     "--config.decode.beam_size: 'decode' is not a block of this config. Its top-level keys: optim, seed."),
    ("--config.optim.lrr=1",
     "--config.optim.lrr: config.optim has no key 'lrr'; did you mean 'lr'? The keys of config.optim: b1, lr."),
    ("--noconfig.optim.nesterov", "--config.optim.nesterov: config.optim has no key 'nesterov'. The keys of "
     "config.optim: b1, lr."),
    ("--config.seed.x=1", "--config.seed.x: config.seed is a value (0), not a block of keys."),
])
def test_an_override_without_a_place_names_the_block_and_its_keys(capsys, override, message):
  """Whatever ml_collections raised for it (a KeyError without the path), the message comes from the override."""
  config = ml_collections.ConfigDict({"optim": {"lr": 1.0, "b1": 0.9}, "seed": 0})
  with pytest.raises(SystemExit) as exited, errors.flag_errors_reported(["prog", "--seed=1", override], config):
    raise KeyError("x")
  assert exited.value.code == 2
  assert capsys.readouterr().err == f"error: Unknown config key {message}\n"
