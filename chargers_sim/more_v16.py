"""What a simulated 1.6 station says about its cache, schedules, costs and triggered
messages (same function names as :mod:`chargers_sim.more_v201`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from chargers_sim.session import now

if TYPE_CHECKING:
    from chargers_sim.driver import DriverHandlers

__all__ = [
    "composite_answer", "group_of", "handlers", "id_info", "master_pass_group",
    "profile_of", "shown_cost",
    "triggered",
]

# the vendor of the OCA "California Pricing Requirements" DataTransfer convention
COST_VENDOR = "org.openchargealliance.costmsg"


def id_info(answer: dict[str, Any]) -> dict[str, Any]:
    return dict(answer.get("idTagInfo") or {})


def group_of(info: dict[str, Any]) -> str | None:
    return info.get("parentIdTag")


def profile_of(p: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """(connector, profile) of a SetChargingProfile, the profile in 2.0.1's shape."""
    cs = p["csChargingProfiles"]
    return int(p["connectorId"]), {
        "id": cs["chargingProfileId"], "stackLevel": cs["stackLevel"],
        "chargingProfilePurpose": cs["chargingProfilePurpose"],
        "chargingProfileKind": cs["chargingProfileKind"],
        "chargingSchedule": [cs["chargingSchedule"]]}


def composite_answer(connector: int, unit: str, duration: int,
                     periods: list[dict[str, Any]]) -> dict[str, Any]:
    """1.6 §6.24 GetCompositeSchedule.conf."""
    return {"status": "Accepted", "connectorId": connector, "scheduleStart": now(),
            "chargingSchedule": {"duration": duration, "chargingRateUnit": unit,
                                 "chargingSchedulePeriod": periods}}


def master_pass_group(st: DriverHandlers) -> str | None:
    return None  # 1.6 has no master pass group (2.0.1 C16)


def shown_cost(p: dict[str, Any]) -> tuple[str, float] | None:
    """The (transaction, cost) a running-cost DataTransfer asks the display to show."""
    if p.get("vendorId") != COST_VENDOR or p.get("messageId") not in ("RunningCost",
                                                                     "FinalCost"):
        return None
    body = orjson.loads(p.get("data") or "{}")
    return str(body["transactionId"]), float(body["cost"])


def triggered(st: DriverHandlers, what: str, connector: int | None
              ) -> list[tuple[str, dict[str, Any]]] | None:
    """The messages a 1.6 TriggerMessage / ExtendedTriggerMessage asks for (None: this
    station cannot send it)."""
    connectors = [connector] if connector else list(st.meters)
    if what == "BootNotification":
        return [("BootNotification", st.rules.boot_payload(st.station_id, st.firmware_version))]
    if what == "Heartbeat":
        return [("Heartbeat", {})]
    if what == "StatusNotification":
        return [("StatusNotification", st.rules.status_payload(c, st.status[c]))
                for c in connectors if c in st.status]
    if what == "MeterValues":
        return [("MeterValues", {"connectorId": c, "meterValue": [{
            "timestamp": now(), "sampledValue": [{
                "value": str(st.meters[c].register_wh), "context": "Trigger",
                "measurand": "Energy.Active.Import.Register", "unit": "Wh"}]}]})
            for c in connectors if c in st.meters]
    if what in ("DiagnosticsStatusNotification", "FirmwareStatusNotification",
                "LogStatusNotification"):
        return [(what, {"status": "Idle"})]  # nothing uploading or installing
    if what == "SignChargePointCertificate":  # security extension: a new key's CSR
        return [("SignCertificate", {"csr": st.pki.csr()})]
    return None


def handlers(st: DriverHandlers) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
    def extended_trigger(p: dict[str, Any]) -> dict[str, Any]:
        # 1.6 security extension: the same messages, plus logs and certificates
        return {"status": st._send_triggered(p["requestedMessage"], p.get("connectorId"))}

    return {"ExtendedTriggerMessage": extended_trigger}
