"""The simulated station's security events (SecurityEventNotification, 1.6 security
extension and 2.0.1 A04) against the real central system over real sockets: sent at the
moments they happen (first boot, reboot after a Reset, firmware installed or refused, a
certificate chain rejected, the central system's TLS certificate not trusted) or injected,
and what the central system stored; a station's flood of them held to its quota."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from chargers_sim import Station
from chargers_sim.maintenance import simulator_image
from csms.domain.maintenance import FirmwareImage
from csms.filestore import firmware_path
from support import RunningServer, station_events, until
from support.admin import api
from support.tls import server_tls

VERSIONS = ["1.6", "2.0.1"]
ACTION = "SecurityEventNotification"
FAST: dict[str, Any] = {"meter_interval": 60, "call_timeout": 3, "retry_interval": 0.1,
                        "backoff_base": 0.05, "backoff_cap": 0.2}
# the 2.0.1 names and the 1.6 security whitepaper's where they differ
NAMES = {"1.6": {"InvalidChargingStationCertificate": "InvalidChargePointCertificate",
                 "InvalidCsmsCertificate": "InvalidCentralSystemCertificate"},
         "2.0.1": {}}


def name(version: str, kind: str) -> str:
    return NAMES[version].get(kind, kind)


async def reported(server: RunningServer, sid: str, kind: str) -> list[dict[str, Any]]:
    """The station's security events of that type the central system stored (its own
    security notes share the event kind and are left out by type)."""
    return [e for e in await station_events(server, sid, "security") if e.get("type") == kind]


def handled(server: RunningServer, action: str = ACTION) -> int:
    """How many of the action's CALLs the central system handled without an error."""
    return server.central.metrics.calls.value(action, "ok")


async def sim(server: RunningServer, version: str, sid: str = "SIM1",
              **kw: Any) -> Station:
    await server.add_station(sid, **({"password": kw["password"], "profile": 2}
                                     if "password" in kw else {}))
    st = Station(server.url, sid, version, seed=7, **{**FAST, **kw})
    await st.start()
    return st


@pytest.mark.parametrize("version", VERSIONS)
async def test_startup_injected_and_reboot_events_are_stored(
        csms_server: RunningServer, version: str) -> None:
    st = await sim(csms_server, version, startup_event=True)
    try:
        [startup] = await until(lambda: reported(csms_server, "SIM1", "StartupOfTheDevice"),
                                "StartupOfTheDevice stored")
        assert startup["techInfo"] == "firmware sim-1.0"
        # an operator's or a test's injection: a tamper sensor
        assert await st.security_event("TamperDetectionActivated", "cover opened")
        [tamper] = await reported(csms_server, "SIM1", "TamperDetectionActivated")
        assert tamper["techInfo"] == "cover opened" and tamper["timestamp"].endswith("Z")
        # a Reset: the station reboots and reports it after its next boot
        status, body = await api(csms_server, "POST", "/stations/SIM1/commands/reset",
                                 {"hard": True})
        assert status == 200 and body["status"] == "Accepted", body
        [reboot] = await until(lambda: reported(csms_server, "SIM1", "ResetOrReboot"),
                               "ResetOrReboot stored")
        assert st.connections == 2
        assert "reset asked by the central system" in reboot["techInfo"]
        # the startup event is for the first boot only
        assert len(await reported(csms_server, "SIM1", "StartupOfTheDevice")) == 1
        await until(lambda: _true(len(st.security_events_sent) == 3), "the answer")
        assert [e["type"] for e in st.security_events_sent] == [
            "StartupOfTheDevice", "TamperDetectionActivated", "ResetOrReboot"]
        assert handled(csms_server) == 3
    finally:
        await st.close()


@pytest.mark.parametrize("version", VERSIONS)
async def test_an_event_while_offline_is_sent_after_the_boot(
        csms_server: RunningServer, version: str) -> None:
    st = await sim(csms_server, version)
    try:
        await st.go_offline()
        assert not await st.security_event("MemoryExhaustion", "log full")
        assert await reported(csms_server, "SIM1", "MemoryExhaustion") == []
        st.go_online()
        [event] = await until(lambda: reported(csms_server, "SIM1", "MemoryExhaustion"),
                              "the queued event stored")
        assert event["techInfo"] == "log full"
    finally:
        await st.close()


async def add_firmware(server: RunningServer, version: str, blob: bytes,
                       signature: str | None = None, cert: str | None = None) -> None:
    digest = hashlib.sha256(blob).hexdigest()
    path = firmware_path(server.settings.data_dir, digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(blob)

    async def work(tx: Any) -> None:
        await tx.add_firmware(FirmwareImage(version, "fw.bin", len(blob), digest,
                                            datetime.now(UTC), signature, cert))

    await server.repo.unit(work)


@pytest.mark.parametrize("version", VERSIONS)
async def test_firmware_updated_and_invalid_signature(
        csms_server: RunningServer, version: str, tmp_path: Path) -> None:
    from csms.cli.firmware import sign_image
    from support.pki import key_and_cert

    blob = simulator_image("sim-3.0")
    key, cert = key_and_cert(tmp_path)
    await add_firmware(csms_server, "sim-3.0", blob, sign_image(blob, key, cert), cert.decode())
    await add_firmware(csms_server, "sim-bad", simulator_image("sim-bad"),
                       sign_image(blob, key, cert), cert.decode())  # another image's
    st = await sim(csms_server, version)
    try:
        path = "/stations/SIM1/commands/update-firmware"
        status, body = await api(csms_server, "POST", path, {"version": "sim-bad"})
        assert status == 200, body
        [bad] = await until(lambda: reported(csms_server, "SIM1", "InvalidFirmwareSignature"),
                            "InvalidFirmwareSignature stored")
        assert bad["techInfo"] == f"firmware request {body['request_id']}"
        assert st.firmware_version == "sim-1.0"
        status, body = await api(csms_server, "POST", path, {"version": "sim-3.0"})
        assert status == 200, body
        [updated] = await until(lambda: reported(csms_server, "SIM1", "FirmwareUpdated"),
                                "FirmwareUpdated stored")
        assert updated["techInfo"] == "firmware sim-3.0"
        assert st.firmware_statuses[-1] == "Installed"
    finally:
        await st.close()


@pytest.mark.parametrize("version", VERSIONS)
async def test_a_rejected_certificate_chain_is_reported(
        csms_server: RunningServer, version: str) -> None:
    st = await sim(csms_server, version)
    try:
        request: dict[str, Any] = {"csr": st.pki.csr()}
        if version == "2.0.1":
            request["certificateType"] = "ChargingStationCertificate"
        assert (await st.call("SignCertificate", request))["status"] == "Accepted"
        st.pki.csr()  # a new key meanwhile: the chain signed for the first one does not fit
        kind = name(version, "InvalidChargingStationCertificate")
        [event] = await until(lambda: reported(csms_server, "SIM1", kind), f"{kind} stored")
        assert "pending key" in event["techInfo"]
        assert st.pki.installed_chains == 0
        # the central system noted the refusal on its side too
        assert await until(lambda: reported(csms_server, "SIM1", "CertificateSignedRejected"),
                           "the central system's note")
    finally:
        await st.close()


@pytest.mark.parametrize("version", VERSIONS)
async def test_an_untrusted_central_system_certificate_is_reported_once_connected(
        csms_server: RunningServer, version: str, tmp_path: Path) -> None:
    files = server_tls(tmp_path)
    (tmp_path / "other").mkdir()
    stranger = server_tls(tmp_path / "other")  # its CA did not sign the server's certificate
    await csms_server.stop()
    csms_server.settings = replace(csms_server.settings, tls_cert=str(files.cert),
                                   tls_key=str(files.key), tls_port=0)
    await csms_server.start()
    await csms_server.add_station("SIM1", password="tls-password-0123", profile=2)
    url = f"wss://127.0.0.1:{csms_server.central.tls_port}"
    st = Station(url, "SIM1", version, password="tls-password-0123", tls_ca=str(stranger.ca),
                 **FAST)
    starting = asyncio.create_task(st.start(20))
    try:
        await until(lambda: _untrusted(st), "the handshake refused by the station")
        st.tls_ca = str(files.ca)  # the operator installs the right root
        await starting
        kind = name(version, "InvalidCsmsCertificate")
        [event] = await until(lambda: reported(csms_server, "SIM1", kind), f"{kind} stored")
        assert event["techInfo"].startswith(url)
        assert "certificate" in event["techInfo"]
    finally:
        starting.cancel()
        await st.close()


async def _untrusted(st: Station) -> bool:
    return st.failure is not None and "is not trusted" in st.failure.reason


@pytest.mark.parametrize("version", VERSIONS)
async def test_a_station_flooding_security_events_is_held_to_its_quota(
        csms_server: RunningServer, version: str) -> None:
    await csms_server.stop()
    csms_server.settings = replace(csms_server.settings, quota_security_events=10 * 256,
                                   storage_reserve=0)
    await csms_server.start()
    st = await sim(csms_server, version)
    try:
        for n in range(60):  # a compromised or broken station
            assert await st.security_event("AttemptedReplayAttacks", f"replay {n}")
        assert len(st.security_events_sent) == 60  # every one answered
        assert handled(csms_server) == 60
        stored = await reported(csms_server, "SIM1", "AttemptedReplayAttacks")
        assert len(stored) == 10
        [note] = await station_events(csms_server, "SIM1", "quota")
        assert note["kind"] == "security"
    finally:
        await st.close()


async def _true(value: bool) -> bool:
    return value
