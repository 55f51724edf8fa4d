"""Settings.load: CLI flags > CSMS_* environment > defaults (this build reads no file)."""

from __future__ import annotations

import pytest

from csms.config import Settings


def test_defaults() -> None:
    s = Settings.load({})
    assert (s.port, s.db, s.auto_register, s.keystore) == (9000, "./csms.sqlite3", False, "")


def test_environment_over_defaults_and_flags_over_environment() -> None:
    env = {"CSMS_PORT": "9100", "CSMS_DB": "/tmp/x.db", "CSMS_CALL_TIMEOUT": "2.5"}
    s = Settings.load(env)
    assert (s.port, s.db, s.call_timeout) == (9100, "/tmp/x.db", 2.5)
    s = Settings.load(env, port=9200, call_timeout=None)  # None: the flag was not given
    assert (s.port, s.db, s.call_timeout) == (9200, "/tmp/x.db", 2.5)


def test_an_empty_variable_is_not_set() -> None:
    assert Settings.load({"CSMS_PORT": ""}).port == 9000


@pytest.mark.parametrize(("raw", "expected"), [
    ("1", True), ("true", True), ("YES", True), ("on", True),
    ("0", False), ("false", False), ("No", False), ("off", False)])
def test_booleans(raw: str, expected: bool) -> None:
    assert Settings.load({"CSMS_AUTO_REGISTER": raw}).auto_register is expected


@pytest.mark.parametrize(("name", "raw"), [
    ("CSMS_PORT", "ninety"), ("CSMS_AUTO_REGISTER", "maybe"), ("CSMS_CALL_TIMEOUT", "soon")])
def test_a_bad_value_names_the_variable(name: str, raw: str) -> None:
    with pytest.raises(ValueError, match=f"{name}={raw!r}"):
        Settings.load({name: raw})


def test_the_operator_keystore_comes_from_the_environment() -> None:
    s = Settings.load({"CSMS_KEYSTORE": "/k.json", "CSMS_KEYSTORE_PASSWORD_FILE": "/pw"})
    assert (s.keystore, s.keystore_password_file) == ("/k.json", "/pw")


def test_the_process_environment_is_read_when_none_is_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CSMS_HEARTBEAT_INTERVAL", "42")
    assert Settings.load().heartbeat_interval == 42
