"""How user errors reach the person: one line on stderr and an exit code."""
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
