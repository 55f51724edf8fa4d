"""A node's broker login and TLS against a real Mosquitto of the test's own: the right
login publishes events and routes commands; a wrong or missing one, or a broker whose
certificate another CA signed, is refused with one line naming the broker (never the
password) and retried; and no password reaches a log line or a stranger's listener."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import aiomqtt
import pytest

from csms.bus.broker import BrokerUnavailable, connect, tls_context
from csms.bus.commands import CommandBus
from csms.config import MqttBroker, Settings
from support import RunningServer, until
from support.client import RawClient
from support.services import Broker, Subscriber
from support.tls import ServerTls, server_tls

PASSWORD = "pa:ss/w@rd %s3cret"  # needs percent-encoding in a URL
WRONG = "not-the-pa55word"


def login_url(broker: Broker, password: str, user: str = "node") -> str:
    scheme, rest = broker.url.split("://")
    return f"{scheme}://{quote(user, safe='')}:{quote(password, safe='')}@{rest}"


@dataclass
class Node:
    server: RunningServer
    logs: pytest.LogCaptureFixture


@pytest.fixture
def login_broker(tmp_path: Path) -> Iterator[Broker]:
    (tmp_path / "login").mkdir()
    b = Broker(tmp_path / "login", users={"node": PASSWORD, "reader": "reader-pw"})
    b.start()
    yield b
    b.stop()


@pytest.fixture
def broker_tls(tmp_path: Path) -> ServerTls:
    (tmp_path / "pki").mkdir()
    return server_tls(tmp_path / "pki")


@pytest.fixture
def tls_broker(tmp_path: Path, broker_tls: ServerTls) -> Iterator[Broker]:
    (tmp_path / "tls").mkdir()
    b = Broker(tmp_path / "tls", users={"node": PASSWORD, "reader": "reader-pw"},
               tls=broker_tls)
    b.start()
    yield b
    b.stop()


def settings(tmp_path: Path, mqtt: str, **more: str) -> Settings:
    s = Settings.load(env={}, db=str(tmp_path / "csms.db"), host="127.0.0.1", port=0,
                      data_dir=str(tmp_path / "data"), admin_port=-1, mqtt=mqtt,
                      boot_get_configuration=False, **more)
    s.check_serving()
    return s


@pytest.fixture
async def node_factory(caplog: pytest.LogCaptureFixture,
                       tmp_path: Path) -> AsyncIterator[list[RunningServer]]:
    caplog.set_level(logging.DEBUG)  # the libraries' lines too (paho, aiomqtt)
    started: list[RunningServer] = []
    yield started
    for server in started:
        await server.stop()


async def start(started: list[RunningServer], s: Settings) -> RunningServer:
    server = RunningServer(s)
    await server.start()
    started.append(server)
    return server


async def boot(server: RunningServer, station: str) -> None:
    await server.add_station(station)
    async with await RawClient.connect(server.url, station) as c:
        await c.result("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})


def assert_no_password(text: str, *passwords: str) -> None:
    for password in passwords:
        for form in (password, quote(password, safe=""), quote(password)):
            assert form not in text, f"{form!r} shown"


async def test_the_right_login_publishes_events_and_routes_commands(
        tmp_path: Path, login_broker: Broker, node_factory: list[RunningServer],
        caplog: pytest.LogCaptureFixture) -> None:
    sub = Subscriber(login_broker.port, login=("reader", "reader-pw"))
    try:
        await asyncio.wait_for(sub.ready.wait(), 10)
        server = await start(node_factory, settings(tmp_path, login_url(login_broker, PASSWORD)))
        assert server.app is not None and server.app.bus is not None
        await server.add_station("CP-LOGIN")
        async with await RawClient.connect(server.url, "CP-LOGIN") as station:
            await station.result("BootNotification", {"chargePointVendor": "V",
                                                      "chargePointModel": "M"})
            await sub.wait_for(lambda s: any("CP-LOGIN" in t for t in s.topics))
            # a command asked of another node travels to this one, which holds the station
            async with asyncio.timeout(10):
                await server.app.bus.connected.wait()
            asker = CommandBus(login_url(login_broker, PASSWORD), "asker",
                               secret=server.app.bus.secret)
            stop = asyncio.Event()

            async def no_commands(*_: object) -> tuple[int, dict[str, object]]:
                return 500, {}

            task = asyncio.create_task(asker.run(no_commands, stop))
            try:
                async with asyncio.timeout(10):
                    await asker.connected.wait()
                asked = asyncio.create_task(asker.request(
                    server.app.bus.node_id, "CP-LOGIN", "trigger", {"message": "Heartbeat"},
                    None, 5))
                call = await asyncio.wait_for(station.calls.get(), 5)
                assert call[2:] == ["TriggerMessage", {"requestedMessage": "Heartbeat"}]
                await station.answer(call[1], {"status": "Accepted"})
                status, result = await asked
                assert (status, result.get("status")) == (200, "Accepted"), result
            finally:
                stop.set()
                await task
        states = server.app.tasks.states()
        assert states["relay"].failures == 0 and states["command-bus"].failures == 0
    finally:
        await sub.close()
    assert_no_password(caplog.text, PASSWORD)
    assert "mqtt://node@127.0.0.1" in caplog.text  # the broker named, with its user


@pytest.mark.parametrize(("user", "password", "expected"), [
    ("node", WRONG, "refused the login of user 'node'"),
    ("stranger", PASSWORD, "refused the login of user 'stranger'"),
    (None, None, "refused a connection without a login"),
])
async def test_a_refused_login_is_one_clear_line_and_retried(
        tmp_path: Path, login_broker: Broker, node_factory: list[RunningServer],
        caplog: pytest.LogCaptureFixture, user: str | None, password: str | None,
        expected: str) -> None:
    url = login_broker.url if user is None else login_url(login_broker, str(password), user)
    server = await start(node_factory, settings(tmp_path, url))
    assert server.app is not None
    tasks = server.app.tasks

    async def retried() -> bool:
        states = tasks.states()
        return all(states[t].failures >= 2 for t in ("relay", "command-bus"))

    await until(retried, "two refused logins of each client", timeout=10)
    for name in ("relay", "command-bus"):
        state = tasks.states()[name]
        assert state.state == "down" and expected in str(state.last_error), state
    shown = f"mqtt://{user}@127.0.0.1:{login_broker.port}" if user else login_broker.url
    lines = [r.getMessage() for r in caplog.records
             if r.name == "csms.tasks" and "down" in r.getMessage()]
    assert lines and all(f"the MQTT broker {shown} {expected}" in line for line in lines), lines
    # the node keeps serving stations meanwhile
    await boot(server, "CP-STILL")
    assert_no_password(caplog.text, PASSWORD, WRONG)


async def test_a_stranger_without_the_login_reads_no_event_and_sends_no_command(
        login_broker: Broker) -> None:
    for login in ({}, {"username": "node", "password": WRONG}):
        with pytest.raises(aiomqtt.MqttCodeError, match="authori"):
            async with aiomqtt.Client("127.0.0.1", login_broker.port, timeout=5,
                                      identifier="stranger", **login) as c:
                await c.subscribe("voltledger/#")


async def test_tls_with_the_operators_ca_publishes_and_logs_in(
        tmp_path: Path, tls_broker: Broker, broker_tls: ServerTls,
        node_factory: list[RunningServer], caplog: pytest.LogCaptureFixture) -> None:
    trust = ssl.create_default_context(cafile=str(broker_tls.ca))
    sub = Subscriber(tls_broker.port, login=("reader", "reader-pw"), tls=trust)
    try:
        await asyncio.wait_for(sub.ready.wait(), 10)
        url = login_url(tls_broker, PASSWORD)
        assert url.startswith("mqtts://")
        server = await start(node_factory, settings(tmp_path, url, mqtt_ca=str(broker_tls.ca)))
        await boot(server, "CP-TLS")
        await sub.wait_for(lambda s: any("CP-TLS" in t for t in s.topics))
    finally:
        await sub.close()
    assert_no_password(caplog.text, PASSWORD)


def test_tls_checks_the_chain_and_the_name(broker_tls: ServerTls) -> None:
    for ca in ("", str(broker_tls.ca)):  # the system's CAs, the operator's
        context = tls_context(MqttBroker("broker", 8883, True, ca_file=ca))
        assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
        assert context.minimum_version >= ssl.TLSVersion.TLSv1_2


async def test_a_broker_certificate_of_another_ca_is_refused(
        tmp_path: Path, tls_broker: Broker, node_factory: list[RunningServer],
        caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "other").mkdir()
    other = server_tls(tmp_path / "other")  # the CA the operator trusts: not the broker's
    url = login_url(tls_broker, PASSWORD)
    for more in ({"mqtt_ca": str(other.ca)}, {}):  # the operator's CA, the system's CAs
        server = await start(node_factory, settings(tmp_path, url, **more))
        assert server.app is not None
        tasks = server.app.tasks

        async def refused() -> bool:
            return tasks.states()["relay"].failures >= 1  # noqa: B023

        await until(refused, "a refused TLS connection", timeout=10)
        error = str(tasks.states()["relay"].last_error)
        assert f"cannot connect to the MQTT broker mqtts://node@127.0.0.1:{tls_broker.port}" \
            in error and "CERTIFICATE_VERIFY_FAILED" in error, error
        await server.stop()
        node_factory.remove(server)
    assert_no_password(caplog.text, PASSWORD)


async def test_the_password_never_reaches_a_stranger_posing_as_the_broker(
        tmp_path: Path, broker_tls: ServerTls) -> None:
    """A listener with a certificate of its own CA, where the node expects its broker:
    the TLS check fails before the login is sent; over plain mqtt:// it would have it."""
    (tmp_path / "stranger").mkdir()
    stranger = server_tls(tmp_path / "stranger")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(stranger.cert, stranger.key)
    received = bytearray()

    async def listen(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while chunk := await reader.read(4096):
                received.extend(chunk)
        except (OSError, ssl.SSLError):
            pass
        finally:
            writer.close()

    for tls in (context, None):
        received.clear()
        server = await asyncio.start_server(listen, "127.0.0.1", 0, ssl=tls)
        port = server.sockets[0].getsockname()[1]
        scheme = "mqtts" if tls else "mqtt"
        broker = Settings.load(env={}, mqtt=f"{scheme}://node:{quote(PASSWORD, safe='')}"
                               f"@127.0.0.1:{port}", **(
                                   {"mqtt_ca": str(broker_tls.ca)} if tls else {})
                               ).mqtt_broker()
        assert broker is not None
        with pytest.raises(BrokerUnavailable) as caught:
            async with connect(broker, "node", timeout=1):
                pass
        server.close()
        await server.wait_closed()
        assert_no_password(str(caught.value), PASSWORD)
        if tls:
            assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value)
            assert PASSWORD.encode() not in received
        else:  # the control: in the clear, the CONNECT carries it
            assert PASSWORD.encode() in received
