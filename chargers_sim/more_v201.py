"""What a simulated 2.0.1 station says about its cache, schedules and profiles, display
messages, customer data, network profiles, costs and triggered messages (same function
names as :mod:`chargers_sim.more_v16`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from chargers_sim.connection import CallRejected
from chargers_sim.session import now

if TYPE_CHECKING:
    from chargers_sim.driver import DriverHandlers

__all__ = [
    "composite_answer", "group_of", "handlers", "id_info", "master_pass_group",
    "profile_of", "shown_cost",
    "triggered",
]

# what one NotifyCustomerInformation / NotifyDisplayMessages part carries at most
PART_CHARS = 512


def id_info(answer: dict[str, Any]) -> dict[str, Any]:
    return dict(answer.get("idTokenInfo") or {})


def group_of(info: dict[str, Any]) -> str | None:
    group = info.get("groupIdToken")
    return str(group["idToken"]) if group else None


def profile_of(p: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    return int(p["evseId"]), dict(p["chargingProfile"])


def composite_answer(connector: int, unit: str, duration: int,
                     periods: list[dict[str, Any]]) -> dict[str, Any]:
    """2.0.1 K08 GetCompositeScheduleResponse."""
    return {"status": "Accepted", "schedule": {
        "evseId": connector, "duration": duration, "scheduleStart": now(),
        "chargingRateUnit": unit, "chargingSchedulePeriod": periods}}


def master_pass_group(st: DriverHandlers) -> str | None:
    """C16: the group of the master passes, as the central system set it."""
    return st.variables.get("AuthCtrlr.MasterPassGroupId") or None


def shown_cost(p: dict[str, Any]) -> tuple[str, float] | None:
    return None  # 2.0.1 has CostUpdated; DataTransfer carries no cost


def triggered(st: DriverHandlers, what: str, connector: int | None
              ) -> list[tuple[str, dict[str, Any]]] | None:
    """The messages a 2.0.1 TriggerMessage asks for (F06; None: cannot send it)."""
    evses = [connector] if connector else list(st.meters)
    if what == "BootNotification":
        return [("BootNotification", {**st.rules.boot_payload(st.station_id, st.firmware_version),
                                      "reason": "Triggered"})]
    if what == "Heartbeat":
        return [("Heartbeat", {})]
    if what == "StatusNotification":
        return [("StatusNotification", st.rules.status_payload(c, st.status[c]))
                for c in evses if c in st.status]
    if what == "MeterValues":
        return [("MeterValues", {"evseId": c, "meterValue": [{
            "timestamp": now(), "sampledValue": [{
                "value": st.meters[c].register_wh, "context": "Trigger",
                "measurand": "Energy.Active.Import.Register",
                "unitOfMeasure": {"unit": "Wh"}}]}]}) for c in evses if c in st.meters]
    if what == "TransactionEvent":
        sessions = [s for c, s in st._sessions.items() if connector in (None, 0, c)]
        if not sessions:
            return None
        for s in sessions:  # through the transaction queue: seqNo stays in order
            st._enqueue("TransactionEvent", {
                "eventType": "Updated", "timestamp": now(), "triggerReason": "Trigger",
                "seqNo": s.seq_no, "transactionInfo": {
                    "transactionId": s.transaction_id, "chargingState": "Charging"}}, s)
            s.seq_no += 1
        return []
    if what in ("FirmwareStatusNotification", "LogStatusNotification",
                "PublishFirmwareStatusNotification"):
        return [(what, {"status": "Idle"})]  # nothing installing, uploading, publishing
    if what == "SignChargingStationCertificate":  # A02/A03: a new key's CSR
        return [("SignCertificate", {"csr": st.pki.csr(),
                                     "certificateType": "ChargingStationCertificate"})]
    return None


def _later(st: DriverHandlers, messages: list[tuple[str, dict[str, Any]]], name: str) -> None:
    async def send() -> None:
        await asyncio.sleep(0.05)  # the answer to the request goes out first
        for action, payload in messages:
            with contextlib.suppress(CallRejected, TimeoutError, ConnectionError):
                await st.call(action, payload)

    st._spawn(send(), name)


def _parts(text: str) -> list[str]:
    return [text[i:i + PART_CHARS] for i in range(0, len(text), PART_CHARS)] or [""]


def handlers(st: DriverHandlers) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
    def get_charging_profiles(p: dict[str, Any]) -> dict[str, Any]:
        crit = p.get("chargingProfile") or {}
        found: dict[int, list[dict[str, Any]]] = {}
        for (evse, _), profile in sorted(st.profiles.items()):
            if p.get("evseId") is not None and evse != p["evseId"]:
                continue
            if crit.get("chargingProfilePurpose") not in (
                    None, profile["chargingProfilePurpose"]):
                continue
            if crit.get("chargingProfileId") and profile["id"] not in crit[
                    "chargingProfileId"]:
                continue
            found.setdefault(evse, []).append(profile)
        if not found:
            return {"status": "NoProfiles"}
        evses = sorted(found)
        _later(st, [("ReportChargingProfiles", {
            "requestId": p["requestId"], "chargingLimitSource": "CSO", "evseId": evse,
            "chargingProfile": found[evse], "tbc": n < len(evses) - 1})
            for n, evse in enumerate(evses)], "report-profiles")
        return {"status": "Accepted"}

    def get_transaction_status(p: dict[str, Any]) -> dict[str, Any]:
        # E14: messages still queued; whether the named transaction is still going on
        out: dict[str, Any] = {"messagesInQueue": st.pending_messages > 0}
        if p.get("transactionId"):
            out["ongoingIndicator"] = any(
                s.transaction_id == p["transactionId"] for s in st._sessions.values())
        return out

    def customer_information(p: dict[str, Any]) -> dict[str, Any]:
        tag = (p.get("idToken") or {}).get("idToken") or p.get("customerIdentifier")
        if not tag:
            return {"status": "Invalid"}
        lines = [f"customer {tag}"]
        if tag in st.auth_cache:
            lines.append(f"authorization cache: {st.auth_cache[tag]}")
        if tag in st.local_list:
            lines.append(f"local list: {st.local_list[tag]}")
        lines += [f"session on connector {c.connector}: {c.energy_wh} Wh ({c.reason})"
                  for c in st.completed if c.id_tag == tag]
        if p["clear"]:
            st.auth_cache.pop(tag, None)
            st.local_list.pop(tag, None)
            st.completed = [c for c in st.completed if c.id_tag != tag]
            lines.append("cleared")
        parts = _parts("\n".join(lines)) if p["report"] else ["cleared"]
        _later(st, [("NotifyCustomerInformation", {
            "data": part, "tbc": n < len(parts) - 1, "seqNo": n, "generatedAt": now(),
            "requestId": p["requestId"]}) for n, part in enumerate(parts)], "customer-info")
        return {"status": "Accepted"}

    def set_network_profile(p: dict[str, Any]) -> dict[str, Any]:
        st.network_profiles[int(p["configurationSlot"])] = p["connectionData"]
        return {"status": "Accepted"}

    def set_display_message(p: dict[str, Any]) -> dict[str, Any]:
        info = p["message"]
        if info["message"]["format"] not in ("UTF8", "ASCII"):
            return {"status": "NotSupportedMessageFormat"}  # a text display
        if info.get("transactionId") and not any(
                s.transaction_id == info["transactionId"] for s in st._sessions.values()):
            return {"status": "UnknownTransaction"}
        st.display_messages[int(info["id"])] = info
        return {"status": "Accepted"}

    def get_display_messages(p: dict[str, Any]) -> dict[str, Any]:
        found = [m for i, m in sorted(st.display_messages.items())
                 if (not p.get("id") or i in p["id"])
                 and p.get("priority") in (None, m["priority"])
                 and p.get("state") in (None, m.get("state"))]
        if not found:
            return {"status": "Unknown"}
        _later(st, [("NotifyDisplayMessages", {
            "requestId": p["requestId"], "messageInfo": found[n:n + 4],
            "tbc": n + 4 < len(found)}) for n in range(0, len(found), 4)], "display")
        return {"status": "Accepted"}

    def clear_display_message(p: dict[str, Any]) -> dict[str, Any]:
        return {"status": "Accepted" if st.display_messages.pop(int(p["id"]), None)
                else "Unknown"}

    def cost_updated(p: dict[str, Any]) -> dict[str, Any]:
        st.shown_cost[str(p["transactionId"])] = float(p["totalCost"])
        return {}

    return {
        "GetChargingProfiles": get_charging_profiles,
        "GetTransactionStatus": get_transaction_status,
        "CustomerInformation": customer_information,
        "SetNetworkProfile": set_network_profile,
        "SetDisplayMessage": set_display_message,
        "GetDisplayMessages": get_display_messages,
        "ClearDisplayMessage": clear_display_message,
        "CostUpdated": cost_updated,
    }
