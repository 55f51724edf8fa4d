"""How a simulated station answers the central system's CALLs.

The handlers both versions share are here; those that differ (remote start and
stop, configuration keys or variables, the local list version) come from
``rules.handlers`` of :mod:`chargers_sim.v16` / :mod:`chargers_sim.v201`. They
run one at a time, in order, in the connection's :class:`~csms.link.Link` worker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from chargers_sim.device import SimDeviceModel
from chargers_sim.maintenance import Maintenance
from csms.protocol import IncomingCall

__all__ = ["CallHandlers"]

Answer = Callable[[dict[str, Any]], dict[str, Any]]


class CallHandlers(Maintenance):
    """The station's answers to the central system."""

    def _setup(self) -> None:
        super()._setup()
        self.local_list_version = 0
        self.local_list: dict[str, str] = {}
        self.reply_delay = 0.0  # seconds before each answer (a slow station)
        self._device: SimDeviceModel | None = None

    @property
    def device(self) -> SimDeviceModel:
        """The 2.0.1 device model, made when first used (a load test's thousands of
        stations never pay for it)."""
        if self._device is None:
            self._device = SimDeviceModel(self.variables, len(self.meters), self.power_w)
        return self._device

    def _handlers(self) -> dict[str, Answer]:
        return {
            "Reset": self._reset,
            "ChangeAvailability": self._change_availability,
            "SetChargingProfile": self._set_profile,
            "ClearChargingProfile": self._clear_profile,
            "UnlockConnector": self._unlock,
            "SendLocalList": self._send_local_list,
            "DataTransfer": self._data_transfer,
            "CertificateSigned": self._certificate_signed,
            "InstallCertificate": self._install_certificate,
            "DeleteCertificate": self._delete_certificate,
            **self.rules.handlers(self),
        }

    async def _handle_call(self, call: IncomingCall) -> dict[str, Any]:
        self.received_calls.append((call.action, call.payload))
        if self.reply_delay:
            await asyncio.sleep(self.reply_delay)
        return self._handlers()[call.action](call.payload)

    def _free_connector(self, wanted: int | None, id_tag: str) -> int | None:
        candidates = [wanted] if wanted else list(self.meters)
        for c in candidates:
            if c in self.meters and c not in self._sessions and self.available \
                    and self.may_use(c, id_tag):
                return c
        return None

    def _remote_start(self, id_tag: str, connector: int | None, authorize: bool,
                      remote_start_id: int | None = None) -> str:
        c = self._free_connector(connector, id_tag)
        if c is None:
            return "Rejected"
        self._spawn(self.start_session(c, id_tag, authorize=authorize,
                                       remote_start_id=remote_start_id), "remote-start")
        return "Accepted"

    def _remote_stop(self, transaction_id: str) -> str:
        for c, s in self._sessions.items():
            if s.transaction_id == transaction_id:
                self._spawn(self.stop_session(c, "Remote"), "remote-stop")
                return "Accepted"
        return "Rejected"

    def _reset(self, p: dict[str, Any]) -> dict[str, Any]:
        hard = p["type"] in ("Hard", "Immediate")

        async def reboot() -> None:
            await asyncio.sleep(0.05)  # the answer goes out first
            for c in list(self._sessions):
                await self.stop_session(c, "HardReset" if hard else "SoftReset")
            await self.drop_connection()

        self._spawn(reboot(), "reset")
        return {"status": "Accepted"}

    def _change_availability(self, p: dict[str, Any]) -> dict[str, Any]:
        word = p.get("type") or p.get("operationalStatus")
        self.available = word == "Operative"
        status = "Available" if self.available else "Unavailable"
        if self._sessions:
            return {"status": "Scheduled"}  # 1.6 §5.2 / 2.0.1 G03: after the session
        for c in self.meters:
            self._spawn(self._status(c, status), "availability")
        return {"status": "Accepted"}

    def _set_profile(self, p: dict[str, Any]) -> dict[str, Any]:
        connector, schedule = self.rules.charging_schedule(p)
        limit = float(schedule["chargingSchedulePeriod"][0]["limit"])
        if schedule["chargingRateUnit"] == "A":
            limit = limit * 230.0 * 3  # three phases at 230 V
        self.limit_w[connector] = limit
        return {"status": "Accepted"}

    def _clear_profile(self, p: dict[str, Any]) -> dict[str, Any]:
        had = bool(self.limit_w)
        self.limit_w.clear()
        return {"status": "Accepted" if had else "Unknown"}

    def _unlock(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"status": "Unlocked"}

    def _send_local_list(self, p: dict[str, Any]) -> dict[str, Any]:
        self.local_list_version = int(p.get("listVersion", p.get("versionNumber", 0)))
        self.local_list = {}
        for entry in p.get("localAuthorizationList", []):
            if "idTag" in entry:
                self.local_list[entry["idTag"]] = entry.get("idTagInfo", {}).get("status", "")
            else:
                self.local_list[entry["idToken"]["idToken"]] = entry.get(
                    "idTokenInfo", {}).get("status", "")
        return {"status": "Accepted"}

    def _data_transfer(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"status": "UnknownVendorId"}

    # -- certificates (security profile 3) ---------------------------------------------
    def _certificate_signed(self, p: dict[str, Any]) -> dict[str, Any]:
        status = self.pki.install_chain(p["certificateChain"])
        if status == "Accepted" and self.url.startswith("wss:"):
            async def reconnect() -> None:
                await asyncio.sleep(0.05)  # the answer goes out first
                await self.drop_connection()  # back with the new certificate

            self._spawn(reconnect(), "new-certificate")
        return {"status": status}

    def _install_certificate(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"status": self.pki.install_root(p["certificateType"], p["certificate"])}

    def _delete_certificate(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"status": self.pki.delete_root(p["certificateHashData"])}
