"""Settings.load: each value from a flag, else CSMS_*, else the settings file, else the
default; every wrong value is one SettingsError that names where to fix it."""

from __future__ import annotations

import errno
import socket
from dataclasses import fields
from pathlib import Path

import pytest

from csms.config import (
    INTERNAL,
    Settings,
    SettingsError,
    cannot_listen,
    env_var,
    host_name,
    parse_mqtt_url,
)
from csms.service import defaults
from support.tls import server_tls


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
    env.update({"CSMS_PORT": "7", "CSMS_ADMIN_PORT": "7", "CSMS_TLS_PORT": "7"})
    settings = Settings.load(env=env)
    assert settings.write_buffer_limit == 7 and settings.quota_notifications == 7
    assert all(getattr(settings, f.name) == 7 for f in fields(Settings)
               if str(f.type) == "int" and f.name not in INTERNAL)


def test_a_workers_own_settings_are_never_read_from_the_environment_or_the_file(
        tmp_path: Path) -> None:
    """``csms serve --workers`` hands each worker these itself: a variable or a key of
    the settings file would only break a node (SO_REUSEPORT beside another node's port,
    the admin API given to another worker)."""
    assert {"reuse_port", "worker_count", "worker_index", "metrics_dir"} == INTERNAL
    settings = Settings.load(env={"CSMS_REUSE_PORT": "true", "CSMS_WORKER_COUNT": "4",
                                  "CSMS_WORKER_INDEX": "3", "CSMS_METRICS_DIR": "/tmp/m"})
    assert (settings.reuse_port, settings.worker_count, settings.worker_index,
            settings.metrics_dir) == (False, 1, 0, "")
    for key in ("reuse_port = true", "worker_index = 1", "metrics_dir = '/tmp/m'"):
        with pytest.raises(SettingsError, match="no setting"):
            Settings.load(env={}, config=write(tmp_path, key + "\n"))
    assert Settings.load(env={}, worker_count=2, worker_index=1).worker_index == 1


def test_an_error_names_a_flag_only_where_the_command_takes_one() -> None:
    """A command words the error with the flags it takes; the others by their variable."""
    with pytest.raises(SettingsError) as caught:
        Settings.load(env={"CSMS_CLIENT_CA": "ca.pem"})
    assert str(caught.value) == "--client-ca (CSMS_CLIENT_CA): needs --tls-cert (CSMS_TLS_CERT)"
    assert caught.value.worded(lambda name: None) == "CSMS_CLIENT_CA: needs CSMS_TLS_CERT"
    only_tls = caught.value.worded(lambda name: "--cert" if name == "tls_cert" else None)
    assert only_tls == "CSMS_CLIENT_CA: needs --cert (CSMS_TLS_CERT)"
    with pytest.raises(SettingsError) as caught:
        Settings.load(env={"CSMS_ADMIN_HOST": "0.0.0.0"}).check_serving()
    assert caught.value.worded(lambda name: None).endswith(
        "beyond this machine; add CSMS_ADMIN_PUBLIC=true to expose the admin API there")


@pytest.mark.parametrize(
    ("exc", "message"),
    [
        (OSError(errno.EADDRINUSE, "error while attempting to bind on address"
                 " ('127.0.0.1', 9001): address already in use"),
         "--admin-port (CSMS_ADMIN_PORT): cannot listen on 127.0.0.1:9001: address already"
         " in use"),
        (OSError(errno.EADDRNOTAVAIL, "error while attempting to bind"),
         "--admin-host (CSMS_ADMIN_HOST): cannot listen on 127.0.0.1:9001: cannot assign"
         " requested address"),
        (socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
         "--admin-host (CSMS_ADMIN_HOST): cannot listen on 127.0.0.1:9001: Name or service"
         " not known"),
    ],
)
def test_a_listener_that_cannot_bind_names_its_setting(exc: OSError, message: str) -> None:
    assert str(cannot_listen("admin_port", "admin_host", "127.0.0.1", 9001, exc)) == message


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
        ({"CSMS_TRANSACTION_BYTES_PER_S": "-1"}, {},
         "--transaction-bytes-per-s (CSMS_TRANSACTION_BYTES_PER_S): not negative"),
        ({}, {"transaction_burst_bytes": -1},
         "--transaction-burst-bytes (CSMS_TRANSACTION_BURST_BYTES): not negative"),
        ({}, {"client_ca": "ca.pem"}, "--client-ca (CSMS_CLIENT_CA): needs --tls-cert"),
        ({}, {"mqtt": "http://broker"}, "--mqtt (CSMS_MQTT): expected mqtt://, tcp:// or"
         " mqtts://"),
        ({}, {"mqtt": "mqtt://broker:port"}, "--mqtt (CSMS_MQTT): the port must be a number"),
        ({}, {"mqtt_ca": "ca.pem"}, "--mqtt-ca (CSMS_MQTT_CA): needs an mqtts:// --mqtt"),
        ({}, {"mqtt": "mqtts://broker", "mqtt_password_file": "pw"},
         "--mqtt-password-file (CSMS_MQTT_PASSWORD_FILE): needs a user name in --mqtt"),
        ({}, {"mqtt": "mqtt://u:p@broker", "mqtt_password_file": "pw"},
         "--mqtt-password-file (CSMS_MQTT_PASSWORD_FILE): --mqtt (CSMS_MQTT) has a password"
         " already"),
        ({}, {"chain": "mainnet"}, "--chain (CSMS_CHAIN): local, memory or an http"),
        # 0 is the default: as many as the chain needs (1 on a local test chain)
        ({"CSMS_CONFIRMATIONS": "-1"}, {}, "--confirmations (CSMS_CONFIRMATIONS): not negative"),
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
    plain = parse_mqtt_url("mqtt://broker")
    assert (plain.host, plain.port, plain.tls, plain.username, plain.password) == (
        "broker", 1883, False, None, None)
    assert plain.url == "mqtt://broker:1883"
    login = parse_mqtt_url("tcp://u:secret@broker:1884")
    assert (login.host, login.port, login.tls, login.username, login.password) == (
        "broker", 1884, False, "u", "secret")
    assert login.url == "mqtt://u@broker:1884"
    tls = parse_mqtt_url("mqtts://broker.example")
    assert (tls.host, tls.port, tls.tls) == ("broker.example", 8883, True)
    assert parse_mqtt_url("MQTTS://broker:9883/").port == 9883
    user_only = parse_mqtt_url("mqtt://reader@broker")
    assert (user_only.username, user_only.password) == ("reader", None)


def test_mqtt_credentials_are_percent_decoded_and_never_shown() -> None:
    broker = parse_mqtt_url("mqtts://op%40site:p%3Ass%2F%20w%25rd@[::1]:8884")
    assert (broker.username, broker.password) == ("op@site", "p:ss/ w%rd")
    assert (broker.host, broker.port) == ("::1", 8884)
    assert broker.url == "mqtts://op%40site@[::1]:8884"
    for shown in (broker.url, str(broker), repr(broker)):
        assert "p:ss" not in shown and "p%3Ass" not in shown, shown


@pytest.mark.parametrize(("url", "message"), [
    ("http://u:hunter2@broker", "expected mqtt://, tcp:// or mqtts://"),
    ("ws://broker:1883", "expected mqtt://, tcp:// or mqtts://"),
    ("broker:1883", "expected mqtt://, tcp:// or mqtts://"),
    ("mqtt://u:hunter2@broker:70000", "the port must be a number from 1 to 65535"),
    ("mqtt://u:hunter2@broker:0", "the port must be a number from 1 to 65535"),
    ("mqtts://u:hunter2@broker:-1", "the port must be a number from 1 to 65535"),
    ("mqtt://u:hunter2@broker:x", "the port must be a number from 1 to 65535"),
    ("mqtt://u:hunter2@:1883", "no broker host"),
    ("mqtt://u:hunter2@broker/topic", "a path, query or fragment"),
    ("mqtt://u:hunter2@broker?tls=1", "a path, query or fragment"),
    ("mqtt://u:hunter2@[::1:1883", "not a URL"),
    # a password with a character a URL must not hold bare ends the host part early
    ("mqtt://u:hunter2/x@broker", "percent-encode"),
    ("mqtt://u:hunter2#x@broker", "percent-encode"),
    ("mqtt://u:hunter2?x@broker", "percent-encode"),
])
def test_wrong_mqtt_urls_are_one_line_without_the_password(url: str, message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.load(env={}, mqtt=url)
    text = str(caught.value)
    assert text.startswith("--mqtt (CSMS_MQTT): ") and message in text, text
    assert "\n" not in text and "hunter2" not in text, text


def test_the_mqtt_settings_come_from_flag_env_and_file(tmp_path: Path) -> None:
    tls = server_tls(tmp_path)
    pw = tmp_path / "mqtt.pw"
    pw.write_text("s3cret pass\n", "utf-8")
    env = {"CSMS_MQTT": "mqtts://node@127.0.0.1", "CSMS_MQTT_CA": str(tls.ca),
           "CSMS_MQTT_PASSWORD_FILE": str(pw)}
    settings = Settings.load(env=env)
    settings.check_serving()
    broker = settings.mqtt_broker()
    assert (broker.host, broker.port, broker.tls) == ("127.0.0.1", 8883, True)
    assert (broker.username, broker.password, broker.ca_file) == (
        "node", "s3cret pass", str(tls.ca))
    from_file = Settings.load(env={}, config=write(
        tmp_path, f'mqtt = "mqtts://node@127.0.0.1"\nmqtt-ca = "{tls.ca}"\n'
        f'mqtt_password_file = "{pw}"\n'))
    assert from_file.mqtt_broker() == broker
    assert Settings.load(env={}, mqtt="mqtt://a:b@h").mqtt_broker().password == "b"
    assert Settings.load(env={}).mqtt_broker() is None


def test_mqtt_files_are_checked_before_serving(tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    key.write_text(server_tls(tmp_path).key.read_text())
    for ca, message in ((tmp_path / "nope.pem", "no such file"),
                        (key, "is not a PEM CA certificate"),
                        (tmp_path, "no such file")):
        settings = Settings.load(env={}, mqtt="mqtts://h", mqtt_ca=str(ca))
        with pytest.raises(SettingsError) as caught:
            settings.check_serving()
        assert str(caught.value).startswith("--mqtt-ca (CSMS_MQTT_CA): "), caught.value
        assert message in str(caught.value) and "\n" not in str(caught.value)
    settings = Settings.load(env={}, mqtt="mqtt://u@h",
                             mqtt_password_file=str(tmp_path / "nope"))
    with pytest.raises(SettingsError, match=r"^--mqtt-password-file \(CSMS_MQTT_PASSWORD_FILE"
                       r"\): cannot read"):
        settings.check_serving()


@pytest.mark.parametrize(("header", "name"), [
    ("example.org", "example.org"), ("Example.ORG:9001", "example.org"),
    ("example.org.", "example.org"), ("127.0.0.1:80", "127.0.0.1"), ("[::1]:9001", "::1"),
    ("[::1]", "::1"), ("", None), (":80", None), ("::1", None), ("a.example:x", None),
    ("a.example:", None), ("a b", None), ("[::1", None), ("[::1]x", None),
    ("user@example.org", None), ("example.org:\uff18\uff10", None)])
def test_host_name_of_a_host_header(header: str, name: str | None) -> None:
    assert host_name(header) == name


def test_admin_hosts_are_names_or_addresses() -> None:
    loaded = Settings.load({"CSMS_ADMIN_HOSTS": " csms.example.org, [::1], *,"})
    assert loaded.admin_host_names == ("csms.example.org", "[::1]", "*")
    with pytest.raises(SettingsError, match=r"CSMS_ADMIN_HOSTS.*'https://x/'"):
        Settings.load({"CSMS_ADMIN_HOSTS": "csms.example.org,https://x/"})
