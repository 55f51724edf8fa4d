"""A simulated station's security log: the security events it reports to the central system
(SecurityEventNotification, 1.6 security extension §2.4 / 2.0.1 A04), at the moments they
happen in a station:

* ``StartupOfTheDevice`` at the first boot (``startup_event=True``; ``python -m
  chargers_sim run`` sends it, as firmware does at power-up);
* ``ResetOrReboot`` after a reboot the central system asked for (Reset);
* ``FirmwareUpdated`` after a firmware image was installed (its new version booted), and
  ``InvalidFirmwareSignature`` when an image's signature did not verify;
* ``InvalidChargingStationCertificate`` (1.6: ``InvalidChargePointCertificate``) when a
  CertificateSigned chain was rejected (2.0.1 A02/A03: not for the pending key or not for
  this station);
* ``InvalidCsmsCertificate`` (1.6: ``InvalidCentralSystemCertificate``) when the central
  system's TLS certificate was not trusted: reported once connected again;
* anything a test or an operator injects with :meth:`SecurityEvents.security_event`
  (``--security-event TamperDetectionActivated``).

An event that happens while the station is offline is kept and sent after the next boot,
in order (2.0.1 A04: security events are queued, not lost). The type names are 2.0.1's;
a 1.6 station sends the whitepaper's names (``security_event_type`` of
:mod:`chargers_sim.v16`).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from chargers_sim.connection import CallRejected, log
from chargers_sim.pnc_v16 import PlugAndCharge16
from chargers_sim.session import now

__all__ = ["SecurityEvents"]

TECH_INFO_CHARS = 255  # techInfo's maxLength (1.6 and 2.0.1)


class SecurityEvents(PlugAndCharge16):
    """The security events of a simulated station (see the module docstring)."""

    def _setup(self) -> None:
        super()._setup()
        # the SecurityEventNotification payloads the central system answered, in order
        self.security_events_sent: list[dict[str, Any]] = []
        self._security_queue: list[dict[str, Any]] = []  # sent after the next boot
        self._booted_once = False

    def _security_payload(self, kind: str, tech_info: str | None) -> dict[str, Any]:
        payload: dict[str, Any] = {"type": self.rules.security_event_type(kind)[:50],
                                   "timestamp": now()}
        if tech_info:
            payload["techInfo"] = tech_info[:TECH_INFO_CHARS]
        return payload

    async def security_event(self, kind: str, tech_info: str | None = None) -> bool:
        """Report a security event (its 2.0.1 name, e.g. ``TamperDetectionActivated``):
        sent now when online, else after the next boot. True once answered."""
        payload = self._security_payload(kind, tech_info)
        if not self.online:
            self._security_queue.append(payload)
            return False
        return await self._send_security(payload)

    def _security_later(self, kind: str, tech_info: str | None = None) -> None:
        """An event that happened now, reported after the next boot (the station is
        about to reboot, or it is not connected)."""
        payload = self._security_payload(kind, tech_info)
        # the same event again before it could be sent (a handshake failing at every
        # retry): reported once, at its first time
        if not any(q["type"] == payload["type"] and q.get("techInfo") == payload.get(
                "techInfo") for q in self._security_queue):
            self._security_queue.append(payload)

    async def _send_security(self, payload: dict[str, Any]) -> bool:
        try:
            await self.call("SecurityEventNotification", payload)
        except (TimeoutError, ConnectionError):
            self._security_queue.append(payload)  # sent again after the next boot
            return False
        except CallRejected as exc:
            log.info("! %s security event %s refused: %s", self.station_id, payload["type"],
                     exc)
            return False
        self.security_events_sent.append(payload)
        return True

    async def _flush_security(self) -> None:
        queued, self._security_queue = self._security_queue, []
        for n, payload in enumerate(queued):
            if not await self._send_security(payload):
                # not delivered: it went back to the queue; keep the rest behind it
                self._security_queue += queued[n + 1:]
                return

    # -- the moments they happen ----------------------------------------------------------
    async def _after_boot(self) -> None:
        installing = self._installed_pending is not None
        if not self._booted_once and self.startup_event:
            self._security_queue.insert(0, self._security_payload(
                "StartupOfTheDevice", f"firmware {self.firmware_version}"))
        self._booted_once = True
        await super()._after_boot()  # a firmware update's Installed
        if installing:
            self._security_later("FirmwareUpdated", f"firmware {self.firmware_version}")
        await self._flush_security()

    def _reset(self, p: dict[str, Any]) -> dict[str, Any]:
        answer = super()._reset(p)
        if answer["status"] == "Accepted":
            self._security_later("ResetOrReboot", f"{p['type']} reset asked by the central"
                                                  " system")
        return answer

    async def _firmware_status(self, status: str, request_id: int | None,
                               signed: bool) -> None:
        await super()._firmware_status(status, request_id, signed)
        if status == "InvalidSignature":
            with contextlib.suppress(CallRejected, TimeoutError, ConnectionError):
                await self.security_event("InvalidFirmwareSignature",
                                          f"firmware request {request_id}")

    def _certificate_signed(self, p: dict[str, Any]) -> dict[str, Any]:
        answer = super()._certificate_signed(p)
        if answer["status"] == "Rejected":
            async def report() -> None:
                await asyncio.sleep(0.05)  # the answer goes out first
                await self.security_event(
                    "InvalidChargingStationCertificate",
                    "CertificateSigned: the chain is not for this station's pending key")

            self._spawn(report(), "security-event")
        return answer

    def _untrusted_server(self, url: str, reason: str) -> None:
        self._security_later("InvalidCsmsCertificate", f"{url}: {reason}")
