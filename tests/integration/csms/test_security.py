"""Security profiles 1-3 with real TLS, rate limiting, frame limits, half-open sockets."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import ipaddress
import logging
import ssl
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from websockets.exceptions import InvalidMessage, InvalidStatus

from support import RunningServer
from support.admin import api
from support.client import RawClient
from support.wire import upgrade_request

PASSWORD = "s3cret-station-passw0rd"
BOOT = {"chargePointVendor": "V", "chargePointModel": "M"}


@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    folder: Path
    _ca_key: Any
    _ca_cert: Any

    def client(self, cn: str, *, self_signed: bool = False) -> ssl.SSLContext:
        key = ec.generate_private_key(ec.SECP256R1())
        issuer_key, issuer = (key, None) if self_signed else (self._ca_key, self._ca_cert)
        cert = _cert(cn, key, issuer_key, issuer, client=True)
        cert_path = self.folder / f"client-{cn}-{self_signed}.pem"
        key_path = self.folder / f"client-{cn}-{self_signed}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(_key_pem(key))
        ctx = self.trusting()
        ctx.load_cert_chain(cert_path, key_path)
        return ctx

    def trusting(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca))
        return ctx


def _key_pem(key: Any) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert(cn: str, key: Any, issuer_key: Any, issuer: Any, *, ca: bool = False,
          client: bool = False, server: bool = False) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer is not None else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False), critical=True)
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _cert("voltledger test CA", ca_key, ca_key, None, ca=True)
    (folder / "ca.pem").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = _cert("localhost", server_key, ca_key, ca_cert, server=True)
    (folder / "server.pem").write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    (folder / "server.key").write_bytes(_key_pem(server_key))
    return Pki(folder / "ca.pem", folder / "server.pem", folder / "server.key", folder,
               ca_key, ca_cert)


@pytest.fixture
async def tls_server(csms_server: RunningServer, pki: Pki) -> RunningServer:
    await csms_server.stop()
    csms_server.settings = replace(
        csms_server.settings, tls_cert=str(pki.server_cert), tls_key=str(pki.server_key),
        client_ca=str(pki.ca), tls_port=0, auth_failure_limit=100,
    )
    await csms_server.start()
    return csms_server


def wss(server: RunningServer) -> str:
    return f"wss://127.0.0.1:{server.central.tls_port}"


async def refused(coro: Any) -> int:
    with pytest.raises(InvalidStatus) as info:
        await coro
    return int(info.value.response.status_code)


async def test_profile_2_needs_tls_and_password(tls_server: RunningServer, pki: Pki) -> None:
    await tls_server.add_station("CP2", password=PASSWORD, profile=2)
    # a lower profile than configured (plain ws) is refused
    assert await refused(RawClient.connect(tls_server.url, "CP2", password=PASSWORD)) == 403
    assert await refused(RawClient.connect(wss(tls_server), "CP2", password="wrong" * 4,
                                           ssl=pki.trusting())) == 401
    async with await RawClient.connect(wss(tls_server), "CP2", password=PASSWORD,
                                       ssl=pki.trusting()) as c:
        assert (await c.result("BootNotification", BOOT))["status"] == "Accepted"


async def test_profile_3_needs_a_certificate_with_the_exact_cn(
    tls_server: RunningServer, pki: Pki
) -> None:
    await tls_server.add_station("CP3", profile=3)
    url = wss(tls_server)
    assert await refused(RawClient.connect(url, "CP3", ssl=pki.trusting())) == 403
    for wrong_cn in ("CP3-evil", "xCP3", "cp3", "CP"):
        assert await refused(RawClient.connect(url, "CP3", ssl=pki.client(wrong_cn))) == 403
    # a certificate the CA did not sign fails the TLS handshake itself
    with pytest.raises((ssl.SSLError, ConnectionError, InvalidStatus, InvalidMessage, OSError)):
        await RawClient.connect(url, "CP3", ssl=pki.client("CP3", self_signed=True))
    # plain ws is below profile 3
    assert await refused(RawClient.connect(tls_server.url, "CP3")) == 403
    # refused logins make no address known to the handshake gate; the certificate does
    assert "127.0.0.1" not in tls_server.central.known
    async with await RawClient.connect(url, "CP3", ssl=pki.client("CP3")) as c:
        assert (await c.result("BootNotification", BOOT))["status"] == "Accepted"
    assert "127.0.0.1" in tls_server.central.known


async def test_only_a_login_that_proved_a_secret_makes_its_connection_proven(
    tls_server: RunningServer, pki: Pki
) -> None:
    """A connection comes first in the node's budget for large frames (csms.transport
    LargeFrames) when its login proved a secret: a password checked (profile 1, 2), a
    certificate (profile 3). A station without a password, or one auto-registered, proves
    nothing: anyone who knows its id logs in so."""
    await tls_server.stop()
    tls_server.settings = replace(tls_server.settings, auto_register=True)
    await tls_server.start()
    await tls_server.add_station("CP0")
    await tls_server.add_station("CP1", password=PASSWORD)
    await tls_server.add_station("CP2", password=PASSWORD, profile=2)
    await tls_server.add_station("CP3", profile=3)
    logins = {
        "CP0": RawClient.connect(tls_server.url, "CP0"),
        "NEW": RawClient.connect(tls_server.url, "NEW"),  # auto-registered
        "CP1": RawClient.connect(tls_server.url, "CP1", password=PASSWORD),
        "CP2": RawClient.connect(wss(tls_server), "CP2", password=PASSWORD,
                                 ssl=pki.trusting()),
        "CP3": RawClient.connect(wss(tls_server), "CP3", ssl=pki.client("CP3")),
    }
    proven = {}
    for station, login in logins.items():
        async with await login as c:
            assert (await c.result("BootNotification", BOOT))["status"] == "Accepted"
            proven[station] = tls_server.central.connections[station].channel.ws.proven
    assert proven == {"CP0": False, "NEW": False, "CP1": True, "CP2": True, "CP3": True}


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning")
async def test_tls_below_1_2_is_refused(tls_server: RunningServer, pki: Pki) -> None:
    await tls_server.add_station("CP2", password=PASSWORD, profile=2)
    ctx = pki.trusting()
    ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        await RawClient.connect(wss(tls_server), "CP2", password=PASSWORD, ssl=ctx)


def loopback(n: int) -> str:
    """The n-th loopback address other than 127.0.0.1: another client."""
    return f"127.0.{(n + 2) // 250}.{(n + 2) % 250 + 2}"


async def status_of(coro: Any) -> int:
    try:
        client = await coro
    except InvalidStatus as exc:
        return int(exc.response.status_code)
    await client.close()
    return 101


async def login_until_in(server: RunningServer, station: str, password: str,
                         address: str | None = None, tries: int = 200) -> list[int]:
    """A station's reconnect loop: come back after a 503 (busy) until it gets in."""
    seen = []
    for _ in range(tries):
        code = await status_of(RawClient.connect(server.url, station, password=password,
                                                 local_addr=address))
        seen.append(code)
        if code != 503:
            return seen
        await asyncio.sleep(0.05)
    return seen


def checks(server: RunningServer, result: str) -> int:
    return int(server.central.metrics.password_checks.labels(result)._value.get())


async def test_hundreds_of_concurrent_wrong_logins(csms_server: RunningServer) -> None:
    """300 wrong passwords at once from 300 addresses, the station logging in meanwhile."""
    await csms_server.add_station("CP1", password=PASSWORD)
    guard = csms_server.central.logins
    attempts = [status_of(RawClient.connect(csms_server.url, "CP1",
                                            password=f"wrong-password-{i:04d}",
                                            local_addr=loopback(i)))
                for i in range(300)]
    flood = asyncio.gather(*attempts)
    station = asyncio.create_task(login_until_in(csms_server, "CP1", PASSWORD))
    codes = await flood
    tries = await station
    wrong = checks(csms_server, "wrong")
    print(f"\n300 concurrent wrong logins: {wrong} scrypt checks, answers"
          f" {sorted({c: codes.count(c) for c in set(codes)}.items())}; the station got in"
          f" after {len(tries)} tries {tries}")
    # every answer is a refusal, each 401 cost one check, no more ran at once than allowed
    assert set(codes) <= {401, 503}
    assert wrong == codes.count(401) + tries.count(401)
    assert guard.peak_running <= csms_server.settings.auth_concurrency
    # the station with the right password was never refused for the others' failures
    assert tries[-1] == 101 and set(tries) <= {101, 503}
    # and is let in at once afterwards, from any address, without another check
    before = checks(csms_server, "ok")
    assert await status_of(RawClient.connect(csms_server.url, "CP1", password=PASSWORD,
                                             local_addr=loopback(999))) == 101
    assert checks(csms_server, "ok") == before


async def test_failures_from_other_addresses_never_lock_out_a_station(
    csms_server: RunningServer,
) -> None:
    await csms_server.add_station("CP1", password=PASSWORD)
    for i in range(3 * csms_server.settings.auth_failure_limit):
        assert await refused(RawClient.connect(csms_server.url, "CP1",
                                               password="wrong-password-0000",
                                               local_addr=loopback(i))) == 401
    # first login of the station since the server started: no cached credentials
    async with await RawClient.connect(csms_server.url, "CP1", password=PASSWORD) as c:
        assert "currentTime" in await c.result("Heartbeat", {})


async def test_an_address_over_its_budget(csms_server: RunningServer) -> None:
    await csms_server.add_station("CP1", password=PASSWORD)
    await csms_server.add_station("CP9", password=PASSWORD)
    await csms_server.add_station("OPEN")  # profile 0: no password
    # CP1 logged in once from its own address: its credentials are known to this node
    async with await RawClient.connect(csms_server.url, "CP1", password=PASSWORD,
                                       local_addr="127.0.0.5"):
        pass
    attacker = "127.0.0.9"
    limit = csms_server.settings.auth_failure_limit
    for _ in range(limit):
        assert await refused(RawClient.connect(csms_server.url, "CP9",
                                               password="wrong-password-0000",
                                               local_addr=attacker)) == 401
    # the address used its attempts: the next unknown password is not even checked
    before = checks(csms_server, "wrong") + checks(csms_server, "ok")
    assert await refused(RawClient.connect(csms_server.url, "CP9", password=PASSWORD,
                                           local_addr=attacker)) == 429
    assert checks(csms_server, "wrong") + checks(csms_server, "ok") == before
    # a station that needs no password is not limited by failures from its address
    async with await RawClient.connect(csms_server.url, "OPEN", local_addr=attacker) as c:
        assert "currentTime" in await c.result("Heartbeat", {})
    # nor is a station presenting credentials this node verified before
    async with await RawClient.connect(csms_server.url, "CP1", password=PASSWORD,
                                       local_addr=attacker) as c:
        assert "currentTime" in await c.result("Heartbeat", {})


async def test_a_good_login_does_not_reset_the_budget(csms_server: RunningServer) -> None:
    """An owner of station A guessing station B's password between its own logins."""
    await csms_server.add_station("A", password=PASSWORD)
    await csms_server.add_station("B", password="b-station-password-9")
    me = "127.0.0.7"
    limit = csms_server.settings.auth_failure_limit
    for _ in range(limit):
        assert await refused(RawClient.connect(csms_server.url, "B", password="guess-guess-guess",
                                               local_addr=me)) == 401
        async with await RawClient.connect(csms_server.url, "A", password=PASSWORD,
                                           local_addr=me):
            pass
    assert await refused(RawClient.connect(csms_server.url, "B", password="guess-guess-guess",
                                           local_addr=me)) == 429


async def test_passwords_are_never_logged_or_stored_plain(
    csms_server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await csms_server.add_station("CP1", password=PASSWORD)
    await refused(RawClient.connect(csms_server.url, "CP1", password=PASSWORD + "x"))
    async with await RawClient.connect(csms_server.url, "CP1", password=PASSWORD) as c:
        await c.result("BootNotification", BOOT)
    assert PASSWORD not in caplog.text
    db_bytes = Path(csms_server.settings.db).read_bytes()
    assert PASSWORD.encode() not in db_bytes

    async def row(tx: Any) -> Any:
        return await tx.get_station("CP1")

    stored = (await csms_server.repo.read(row)).password_hash
    assert stored.startswith("scrypt$")


async def test_oversized_frame_closes_only_that_connection(csms_server: RunningServer) -> None:
    await csms_server.add_station("BIG")
    await csms_server.add_station("OK1")
    good = await RawClient.connect(csms_server.url, "OK1")
    big = await RawClient.connect(csms_server.url, "BIG")
    payload = "x" * (csms_server.settings.max_frame_bytes + 1)
    await big.ws.send(f'[2,"1","DataTransfer",{{"vendorId":"v","data":"{payload}"}}]')
    await asyncio.wait_for(big.ws.wait_closed(), 5)
    assert big.ws.close_code == 1009
    assert "currentTime" in await good.result("Heartbeat", {})
    await good.close()

    async def events(tx: Any) -> list[dict[str, Any]]:
        return await tx.list_station_events("BIG", "security")

    await asyncio.sleep(0.1)
    assert any(e["payload"]["type"] == "FrameTooLarge" for e in await csms_server.repo.read(events))


async def test_half_open_socket_is_closed_by_ping_timeout(csms_server: RunningServer) -> None:
    await csms_server.stop()
    csms_server.settings = replace(csms_server.settings, ping_interval=0.2, ping_timeout=0.3,
                                   close_timeout=0.5)
    await csms_server.start()
    await csms_server.add_station("GONE")
    # A raw TCP client completes the handshake and then never reads again: to the
    # server it looks like a station whose network vanished.
    reader, writer = await asyncio.open_connection("127.0.0.1", csms_server.port)
    writer.write(upgrade_request("GONE"))
    status_line = await asyncio.wait_for(reader.readline(), 5)
    assert b"101" in status_line
    await csms_server.wait_connected("GONE")
    async with asyncio.timeout(5):
        while "GONE" in csms_server.central.connections:
            await asyncio.sleep(0.05)
    writer.close()


@pytest.mark.parametrize(("version", "accept"), [
    ("ocpp1.6", True), ("ocpp2.0.1", True), ("ocpp1.6", False), ("ocpp2.0.1", False)])
async def test_password_rotation_switches_only_when_accepted(
    csms_server: RunningServer, caplog: pytest.LogCaptureFixture, version: str, accept: bool,
) -> None:
    caplog.set_level(logging.DEBUG)
    new = "brand-new-password-42"
    await csms_server.add_station("CP1", password=PASSWORD)
    async with await RawClient.connect(csms_server.url, "CP1", [version],
                                       password=PASSWORD) as c:
        await csms_server.wait_connected("CP1")
        req = asyncio.create_task(
            api(csms_server, "POST", "/stations/CP1/commands/set-password", {"password": new}))
        call = await asyncio.wait_for(c.calls.get(), 5)
        if version == "ocpp1.6":
            assert call[2:] == ["ChangeConfiguration", {"key": "AuthorizationKey", "value": new}]
            await c.answer(call[1], {"status": "Accepted" if accept else "Rejected"})
        else:
            assert call[2] == "SetVariables"
            data = call[3]["setVariableData"][0]
            assert (data["component"]["name"], data["variable"]["name"],
                    data["attributeValue"]) == ("SecurityCtrlr", "BasicAuthPassword", new)
            await c.answer(call[1], {"setVariableResult": [{
                "attributeStatus": "Accepted" if accept else "Rejected",
                "component": {"name": "SecurityCtrlr"},
                "variable": {"name": "BasicAuthPassword"}}]})
        status, body = await req
        assert status == 200
        assert body["switched"] is accept
    working, refused_pw = (new, PASSWORD) if accept else (PASSWORD, new)
    async with await RawClient.connect(csms_server.url, "CP1", [version],
                                       password=working) as c:
        assert "currentTime" in await c.result("Heartbeat", {})
    assert await refused(RawClient.connect(csms_server.url, "CP1", [version],
                                           password=refused_pw)) == 401
    _, audit = await api(csms_server, "GET", "/audit")
    assert audit[0]["request"] == {"password": "<redacted>"}
    assert new not in caplog.text


@pytest.mark.parametrize(("version", "accept"), [
    ("ocpp1.6", True), ("ocpp2.0.1", True), ("ocpp1.6", False), ("ocpp2.0.1", False)])
async def test_password_set_through_configuration_switches_only_when_accepted(
    csms_server: RunningServer, caplog: pytest.LogCaptureFixture, version: str, accept: bool,
) -> None:
    """set-config AuthorizationKey / set-variables SecurityCtrlr.BasicAuthPassword do what
    set-password does: the stored hash changes only once the station accepted."""
    caplog.set_level(logging.DEBUG)
    new = "config-set-password-77"
    await csms_server.add_station("CP1", password=PASSWORD)
    if version == "ocpp1.6":
        command, body = "set-config", {"key": "AuthorizationKey", "value": new}
    else:
        command, body = "set-variables", {"values": {
            "SecurityCtrlr.BasicAuthPassword": new, "OCPPCommCtrlr.HeartbeatInterval": "60"}}
    async with await RawClient.connect(csms_server.url, "CP1", [version],
                                       password=PASSWORD) as c:
        await csms_server.wait_connected("CP1")
        req = asyncio.create_task(api(csms_server, "POST", f"/stations/CP1/commands/{command}",
                                      body))
        call = await asyncio.wait_for(c.calls.get(), 5)
        word = "Accepted" if accept else "Rejected"
        if version == "ocpp1.6":
            await c.answer(call[1], {"status": word})
        else:
            await c.answer(call[1], {"setVariableResult": [
                {"attributeStatus": "Accepted", "component": {"name": "OCPPCommCtrlr"},
                 "variable": {"name": "HeartbeatInterval"}},
                {"attributeStatus": word, "component": {"name": "SecurityCtrlr"},
                 "variable": {"name": "BasicAuthPassword"}}]})
        status, answer = await req
        assert status == 200 and answer["switched"] is accept
    working, old = (new, PASSWORD) if accept else (PASSWORD, new)
    async with await RawClient.connect(csms_server.url, "CP1", [version], password=working):
        pass
    assert await refused(RawClient.connect(csms_server.url, "CP1", [version],
                                           password=old)) == 401
    _, audit = await api(csms_server, "GET", "/audit")
    assert new not in str(audit) and "<redacted>" in str(audit[0]["request"])
    # what the server side logged (the test's own client logs its headers too)
    logged = "\n".join(r.getMessage() for r in caplog.records
                       if not r.name.startswith("websockets.client"))
    assert "Authorization" in logged  # the handshake headers were logged, redacted
    for secret in (new, PASSWORD, base64.b64encode(f"CP1:{PASSWORD}".encode()).decode(),
                   base64.b64encode(f"CP1:{new}".encode()).decode()):
        assert secret not in logged


async def test_a_password_the_station_could_not_log_in_with_is_not_sent(
    csms_server: RunningServer,
) -> None:
    await csms_server.add_station("CP1", password=PASSWORD)
    async with await RawClient.connect(csms_server.url, "CP1", password=PASSWORD) as c:
        await csms_server.wait_connected("CP1")
        status, body = await api(csms_server, "POST", "/stations/CP1/commands/set-config",
                                 {"key": "AuthorizationKey", "value": "short"})
        assert status == 400 and "16 to 40" in body["error"]
        assert c.calls.empty()


def test_serve_logs_no_secret_at_debug_level(tmp_path: Path) -> None:
    """The real `csms serve --log-level debug`: handshake headers, a password change
    through set-config, the audit trail and the database file hold no credential."""
    import subprocess
    import sys
    import time

    from bench.common import free_port, wait_port

    db, data = tmp_path / "s.sqlite3", tmp_path / "data"
    new = "debug-level-password-9"
    subprocess.run([sys.executable, "-m", "csms", "stations", "add", "CP1", "--password",
                    PASSWORD, "--db", str(db)], check=True, capture_output=True)
    port, admin = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "csms", "serve", "--port", str(port), "--db", str(db),
         "--admin-port", str(admin), "--data-dir", str(data), "--log-level", "debug"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_port(port)
        wait_port(admin)
        token = (data / "admin.token").read_text().strip()

        async def session() -> None:
            import aiohttp

            async with await RawClient.connect(f"ws://127.0.0.1:{port}", "CP1",
                                               password=PASSWORD) as c:
                await c.result("BootNotification", BOOT)
                # csms serve reads a new 1.6 station's configuration after its boot
                call = await asyncio.wait_for(c.calls.get(), 5)
                assert call[2] == "GetConfiguration"
                await c.answer(call[1], {"configurationKey": [
                    {"key": "HeartbeatInterval", "readonly": False, "value": "60"}]})
                async with aiohttp.ClientSession() as http:
                    req = asyncio.create_task(http.post(
                        f"http://127.0.0.1:{admin}/stations/CP1/commands/set-config",
                        json={"key": "AuthorizationKey", "value": new},
                        headers={"Authorization": f"Bearer {token}"}))
                    call = await asyncio.wait_for(c.calls.get(), 5)
                    await c.answer(call[1], {"status": "Accepted"})
                    assert (await req).status == 200
            async with await RawClient.connect(f"ws://127.0.0.1:{port}", "CP1",
                                               password=new) as c:
                await c.result("Heartbeat", {})

        asyncio.run(session())
        time.sleep(0.5)
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=20)
    logs = out + err
    assert "Authorization" in logs  # the headers were logged, at debug level
    for secret in (PASSWORD, new, token,
                   base64.b64encode(f"CP1:{PASSWORD}".encode()).decode(),
                   base64.b64encode(f"CP1:{new}".encode()).decode()):
        assert secret not in logs
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("s.sqlite3*"))
    assert new.encode() not in stored and PASSWORD.encode() not in stored
