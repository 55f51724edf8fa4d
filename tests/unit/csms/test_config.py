"""Settings.load: each value from a flag, else CSMS_*, else the settings file, else the
default; every wrong value is one SettingsError that names where to fix it."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from csms.config import Settings, SettingsError, env_var, parse_mqtt_url
from csms.service import defaults


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "csms.toml"
    path.write_text(text, "utf-8")
    return str(path)


@pytest.mark.parametrize(
    ("file_port", "env_port", "flag_port", "expected"),
    [
        (None, None, None, 9000),  # the default
        (9100, None, None, 9100),  # file over default
        (9100, "9200", None, 9200),  # env over file
        (9100, "9200", 9300, 9300),  # flag over env
        (None, "9200", 9300, 9300),
        (9100, None, 9300, 9300),
        (None, "9200", None, 9200),
    ],
)
def test_precedence_flag_env_file_default(
    tmp_path: Path, file_port: int | None, env_port: str | None, flag_port: int | None,
    expected: int,
) -> None:
    env = {} if env_port is None else {"CSMS_PORT": env_port}
    config = write(tmp_path, f"port = {file_port}\n") if file_port is not None else None
    settings = Settings.load(env=env, config=config, port=flag_port)
    assert settings.port == expected


def test_the_file_is_named_by_env_or_flag_and_values_mix_by_field(tmp_path: Path) -> None:
    config = write(tmp_path, 'db = "from-file.db"\nheartbeat-interval = 60\n'
                             'auto_register = true\nmax_wait = 5\n')
    settings = Settings.load(env={"CSMS_CONFIG": config, "CSMS_HEARTBEAT_INTERVAL": "90"},
                             db="flag.db")
    assert settings.db == "flag.db"  # flag
    assert settings.heartbeat_interval == 90  # env over file
    assert settings.auto_register is True  # file
    assert settings.max_wait == 5.0 and isinstance(settings.max_wait, float)
    assert settings.port == 9000  # default
    assert settings.config == config


def test_an_empty_variable_or_a_none_flag_is_not_given() -> None:
    settings = Settings.load(env={"CSMS_HOST": ""}, host=None)
    assert settings.host == "127.0.0.1"


def test_defaults_are_the_use_cases_defaults() -> None:
    d = Settings.load(env={})
    assert d.heartbeat_interval == defaults.HEARTBEAT_INTERVAL
    assert d.boot_retry_interval == defaults.BOOT_RETRY_INTERVAL
    assert d.batch_size == defaults.BATCH_SIZE and d.max_wait == defaults.MAX_WAIT
    assert d.confirmations == defaults.CONFIRMATIONS
    assert d.time_past_days * 86400 == defaults.TIME_PAST.total_seconds()
    assert d.time_future_seconds == defaults.TIME_FUTURE.total_seconds()
    assert d.default_max_power_kw == 350.0


def test_the_keystore_comes_from_the_settings() -> None:
    settings = Settings.load(env={"CSMS_KEYSTORE": "/k.json",
                                  "CSMS_KEYSTORE_PASSWORD_FILE": "/pw"})
    assert (settings.keystore, settings.keystore_password_file) == ("/k.json", "/pw")


def test_every_field_has_its_variable() -> None:
    env = {env_var(f.name): "7" for f in fields(Settings) if str(f.type) == "int"}
    env.update({"CSMS_PORT": "7", "CSMS_ADMIN_PORT": "7", "CSMS_TLS_PORT": "7",
                "CSMS_WORKER_INDEX": "6"})  # one of the 7 workers
    settings = Settings.load(env=env)
    assert settings.write_buffer_limit == 7 and settings.quota_notifications == 7
    assert settings.worker_index == 6


@pytest.mark.parametrize(
    ("env", "flags", "message"),
    [
        ({"CSMS_PORT": "abc"}, {}, "CSMS_PORT='abc' is not a valid int"),
        ({"CSMS_AUTO_REGISTER": "maybe"}, {}, "CSMS_AUTO_REGISTER='maybe' is not a valid bool"),
        ({"CSMS_MAX_WAIT": "soon"}, {}, "CSMS_MAX_WAIT='soon' is not a valid float"),
        ({}, {"ws_compression": "gzip"}, "--ws-compression (CSMS_WS_COMPRESSION): choose one"),
        ({}, {"log_level": "loud"}, "--log-level (CSMS_LOG_LEVEL): choose one of"),
        ({}, {"port": 70000}, "--port (CSMS_PORT): a port from -1 to 65535"),
        ({"CSMS_ADMIN_PORT": "-2"}, {}, "--admin-port (CSMS_ADMIN_PORT): a port"),
        ({}, {"batch_size": 0}, "--batch-size (CSMS_BATCH_SIZE): at least 1"),
        ({}, {"max_wait": -1.0}, "--max-wait (CSMS_MAX_WAIT): not negative"),
        ({}, {"client_ca": "ca.pem"}, "--client-ca (CSMS_CLIENT_CA): needs --tls-cert"),
        ({}, {"mqtt": "http://broker"}, "--mqtt (CSMS_MQTT): expected mqtt://host:port"),
        ({}, {"mqtt": "mqtt://broker:port"}, "--mqtt (CSMS_MQTT): expected mqtt://host:port"),
        ({}, {"chain": "mainnet"}, "--chain (CSMS_CHAIN): local, memory or an http"),
        ({}, {"db": ""}, "--db (CSMS_DB): a SQLite file or a postgresql:// URL"),
    ],
)
def test_wrong_values_are_one_line_naming_the_setting(
    env: dict[str, str], flags: dict[str, object], message: str,
) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.load(env=env, **flags)
    assert str(caught.value).startswith(message), str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("port = 'nine'\n", "port = 'nine' is not a valid int"),
        ("auto_register = 1\n", "auto_register = 1 is not a valid bool"),
        ("colour = 'blue'\n", "no setting 'colour'"),
        ("config = 'other.toml'\n", "no setting 'config'"),
        ("port = \n", "is not TOML"),
    ],
)
def test_a_wrong_settings_file_is_one_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.load(env={}, config=write(tmp_path, text))


def test_a_missing_settings_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="cannot read"):
        Settings.load(env={"CSMS_CONFIG": str(tmp_path / "nope.toml")})


def test_unknown_overrides_are_a_programming_error() -> None:
    with pytest.raises(TypeError):
        Settings.load(env={}, colour="blue")


def test_serving_checks(tmp_path: Path) -> None:
    public = Settings.load(env={"CSMS_ADMIN_HOST": "0.0.0.0"})  # loads: not serving yet
    with pytest.raises(SettingsError, match=r"--admin-host .* beyond this machine"):
        public.check_serving()
    Settings.load(env={"CSMS_ADMIN_HOST": "0.0.0.0", "CSMS_ADMIN_PUBLIC": "1"}).check_serving()
    Settings.load(env={"CSMS_ADMIN_HOST": "0.0.0.0", "CSMS_ADMIN_PORT": "-1"}).check_serving()
    with pytest.raises(SettingsError, match=r"--tls-cert .*no such file"):
        Settings.load(env={}, tls_cert=str(tmp_path / "nope.pem")).check_serving()


def test_database_checks(tmp_path: Path) -> None:
    Settings.load(env={}, db=str(tmp_path / "new.db")).check_database()  # may be made
    Settings.load(env={}, db="postgresql://u@h/db").check_database()  # not a file
    with pytest.raises(SettingsError, match="is a folder"):
        Settings.load(env={}, db=str(tmp_path)).check_database()
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(SettingsError, match="is not a SQLite database"):
        Settings.load(env={}, db=str(text)).check_database()
    with pytest.raises(SettingsError, match="does not exist"):
        Settings.load(env={}, db=str(tmp_path / "no" / "x.db")).check_database()
    empty = tmp_path / "empty.db"
    empty.touch()  # SQLite makes a database of an empty file
    Settings.load(env={}, db=str(empty)).check_database()


def test_data_folder_checks(tmp_path: Path) -> None:
    made = Settings.load(env={}, data_dir=str(tmp_path / "a" / "b")).data_folder()
    assert made.is_dir()
    file = tmp_path / "f"
    file.write_text("")
    with pytest.raises(SettingsError, match=r"--data-dir .* is a file"):
        Settings.load(env={}, data_dir=str(file)).data_folder()
    with pytest.raises(SettingsError, match=r"--data-dir .*cannot create"):
        Settings.load(env={}, data_dir=str(file / "sub")).data_folder()
    assert not (tmp_path / "later").exists()
    Settings.load(env={}, data_dir=str(tmp_path / "later")).data_folder(create=False)
    assert not (tmp_path / "later").exists()


def test_mqtt_urls() -> None:
    assert parse_mqtt_url("mqtt://broker") == ("broker", 1883)
    assert parse_mqtt_url("tcp://u:secret@broker:1884") == ("broker", 1884)
