"""What a simulated station says in OCPP 2.0.1 (same function names as chargers_sim.v16)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from chargers_sim.session import Session, TxMessage, now
from csms.link import CallFailed

if TYPE_CHECKING:
    from chargers_sim.connection import StationCore
    from chargers_sim.handlers import CallHandlers
    from chargers_sim.meter import Meter
    from chargers_sim.transactions import TransactionQueue

__all__ = [
    "authorize_payload",
    "authorize_status",
    "before_sending",
    "boot_payload",
    "charging_limit_call",
    "charging_limit_cleared_call",
    "charging_rate_changed",
    "charging_schedule",
    "delivered",
    "firmware_status_call",
    "handlers",
    "load_start",
    "load_update",
    "log_status_call",
    "meter_values",
    "pnc_over_data_transfer",
    "reservation_expired_call",
    "sampled",
    "security_event_type",
    "start_transaction",
    "status_payload",
    "stop_transaction",
    "uploads_by_form",
]

# 2.0.1 has no Preparing/Charging/Finishing connector states: all are Occupied (G01).
_CONNECTOR_STATUS = {"Preparing": "Occupied", "Charging": "Occupied", "Finishing": "Occupied",
                     "SuspendedEV": "Occupied"}


def boot_payload(station_id: str, firmware_version: str = "sim-1.0") -> dict[str, Any]:
    return {"reason": "PowerUp", "chargingStation": {
        "vendorName": "voltledger", "model": "sim-wallbox", "firmwareVersion": firmware_version,
        "serialNumber": station_id[-25:]}}


def status_payload(connector: int, status: str) -> dict[str, Any]:
    return {"timestamp": now(), "connectorStatus": _CONNECTOR_STATUS.get(status, status),
            "evseId": connector, "connectorId": 1}


def authorize_payload(id_tag: str) -> dict[str, Any]:
    return {"idToken": {"idToken": id_tag, "type": "ISO14443"}}


def authorize_status(answer: dict[str, Any]) -> str:
    return str(answer["idTokenInfo"]["status"])


def sampled(meter: Meter, context: str, *, extra: bool,
            signed: dict[str, str] | None) -> list[dict[str, Any]]:
    """Sampled values: numbers with unitOfMeasure; a signed reading as signedMeterValue."""
    energy: dict[str, Any] = {"value": meter.register_wh, "context": context,
                              "measurand": "Energy.Active.Import.Register",
                              "unitOfMeasure": {"unit": "Wh", "multiplier": 0}}
    if signed is not None:
        energy["signedMeterValue"] = signed
    values = [energy]
    if extra:
        values.append({"value": round(meter.last_power_w, 1), "context": context,
                       "measurand": "Power.Active.Import", "unitOfMeasure": {"unit": "W"}})
        for phase in ("L1", "L2", "L3"):
            values.append({"value": round(meter.current_a(), 2), "context": context,
                           "measurand": "Current.Import", "phase": phase,
                           "unitOfMeasure": {"unit": "A"}})
    return values


def _tx_event(st: TransactionQueue, s: Session, event_type: str, trigger: str,
              **extra: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "eventType": event_type, "timestamp": now(), "triggerReason": trigger,
        "seqNo": s.seq_no, "transactionInfo": {"transactionId": s.transaction_id},
        **extra,
    }
    s.seq_no += 1
    if not st.online:
        payload["offline"] = True  # 2.0.1 E04: generated while offline
    return payload


def start_transaction(st: TransactionQueue, s: Session, remote_start_id: int | None) -> None:
    s.transaction_id = uuid.uuid4().hex[:20]
    info: dict[str, Any] = {"transactionId": s.transaction_id, "chargingState": "Charging"}
    if remote_start_id is not None:
        info["remoteStartId"] = remote_start_id
    extra: dict[str, Any] = {} if s.reservation_id is None else {
        "reservationId": s.reservation_id}  # 2.0.1 H01: the reservation it ends
    st._enqueue("TransactionEvent", _tx_event(
        st, s, "Started", "RemoteStart" if remote_start_id is not None else "Authorized",
        **extra, transactionInfo=info, idToken={"idToken": s.id_tag, "type": s.token_type},
        evse={"id": s.connector, "connectorId": 1},
        meterValue=[{"timestamp": now(),
                     "sampledValue": st._sampled(s, "Transaction.Begin", extra=False)}],
    ), s)


def meter_values(st: TransactionQueue, s: Session) -> None:
    sampled_values = st._sampled(s, "Sample.Periodic", extra=True)
    st._enqueue("TransactionEvent", _tx_event(
        st, s, "Updated", "MeterValuePeriodic",
        meterValue=[{"timestamp": now(), "sampledValue": sampled_values}]), s)


def stop_transaction(st: TransactionQueue, s: Session, reason: str) -> None:
    trigger = {"Remote": "RemoteStop", "EVDisconnected": "EVCommunicationLost"}.get(
        reason, "StopAuthorized")
    st._enqueue("TransactionEvent", _tx_event(
        st, s, "Ended", trigger,
        transactionInfo={"transactionId": s.transaction_id, "chargingState": "Idle",
                         "stoppedReason": reason},
        **({"idToken": {"idToken": s.stop_tag, "type": "ISO14443"}} if s.stop_tag else {}),
        meterValue=[{"timestamp": now(), "sampledValue": st._sampled(
            s, "Transaction.End", extra=False)}]), s)


def before_sending(msg: TxMessage) -> None:
    pass  # the station chose the transactionId itself


def delivered(st: TransactionQueue, msg: TxMessage, answer: dict[str, Any]) -> None:
    if msg.action == "TransactionEvent" and msg.payload["eventType"] == "Started":
        msg.session.confirmed.set()
    if "totalCost" in answer:  # I02: the display shows the running cost
        st.shown_cost[str(msg.session.transaction_id)] = float(answer["totalCost"])


# -- answering the central system ------------------------------------------------------
def handlers(st: CallHandlers) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
    def request_start(p: dict[str, Any]) -> dict[str, Any]:
        authorize = st.variables.get("AuthCtrlr.AuthorizeRemoteStart", "true") == "true"
        return {"status": st._remote_start(p["idToken"]["idToken"], p.get("evseId"),
                                           authorize, p["remoteStartId"])}

    def request_stop(p: dict[str, Any]) -> dict[str, Any]:
        return {"status": st._remote_stop(p["transactionId"])}

    def get_variables(p: dict[str, Any]) -> dict[str, Any]:
        results = []
        for item in p["getVariableData"]:
            result: dict[str, Any] = {"component": item["component"],
                                      "variable": item["variable"]}
            status, value = st.device.get(_name(item))
            result["attributeStatus"] = status
            if value is not None:
                result["attributeValue"] = value
            results.append(result)
        return {"getVariableResult": results}

    def set_variables(p: dict[str, Any]) -> dict[str, Any]:
        results = []
        events: list[dict[str, Any]] = []
        for item in p["setVariableData"]:
            name = _name(item)
            status = st.device.check_set(name, item["attributeValue"])
            if status == "Accepted" and name == "SecurityCtrlr.BasicAuthPassword":
                st.password = item["attributeValue"]
            elif status == "Accepted":
                st.variables[name] = item["attributeValue"]
                if name == "OCPPCommCtrlr.HeartbeatInterval":
                    st.heartbeat_interval = float(item["attributeValue"])
                events += st.device.changed(name, item["attributeValue"], now())
            results.append({"attributeStatus": status, "component": item["component"],
                            "variable": item["variable"]})
        if events:
            send_later(st, "NotifyEvent", [{"generatedAt": now(), "seqNo": 0,
                                            "eventData": events}])
        return {"setVariableResult": results}

    def get_local_list_version(p: dict[str, Any]) -> dict[str, Any]:
        return {"versionNumber": st.local_list_version}

    def get_installed_certificates(p: dict[str, Any]) -> dict[str, Any]:
        found = st.pki.installed(list(p.get("certificateType") or []))
        if not found:
            return {"status": "NotFound"}
        return {"status": "Accepted", "certificateHashDataChain": [
            {"certificateType": use, "certificateHashData": data} for use, data in found]}

    def report(request_id: int, data: list[dict[str, Any]], action: str = "NotifyReport",
               field: str = "reportData") -> dict[str, Any]:
        if not data:
            return {"status": "EmptyResultSet"}
        parts = st.device.parts(data)
        send_later(st, action, [
            {"requestId": request_id, "generatedAt": now(), "seqNo": n,
             "tbc": n < len(parts) - 1, field: part} for n, part in enumerate(parts)])
        st.device.reports_sent += 1
        return {"status": "Accepted"}

    def get_base_report(p: dict[str, Any]) -> dict[str, Any]:
        return report(p["requestId"], st.device.report_data(p["reportBase"]))

    def get_report(p: dict[str, Any]) -> dict[str, Any]:
        return report(p["requestId"], st.device.report_data(
            "FullInventory", p.get("componentVariable")))

    def set_monitoring(p: dict[str, Any]) -> dict[str, Any]:
        return {"setMonitoringResult": [st.device.set_monitor(m)
                                        for m in p["setMonitoringData"]]}

    def clear_monitoring(p: dict[str, Any]) -> dict[str, Any]:
        return {"clearMonitoringResult": [st.device.clear_monitor(int(i)) for i in p["id"]]}

    def set_monitoring_base(p: dict[str, Any]) -> dict[str, Any]:
        if p["monitoringBase"] in ("FactoryDefault", "HardWiredOnly"):
            st.device.monitors.clear()  # no preconfigured monitors in a simulator
        return {"status": "Accepted"}

    def set_monitoring_level(p: dict[str, Any]) -> dict[str, Any]:
        st.device.monitoring_level = int(p["severity"])
        return {"status": "Accepted"}

    def get_monitoring_report(p: dict[str, Any]) -> dict[str, Any]:
        return report(p["requestId"], st.device.monitoring_report(p.get("componentVariable")),
                      "NotifyMonitoringReport", "monitor")
    def reserve_now(p: dict[str, Any]) -> dict[str, Any]:
        group = (p.get("groupIdToken") or {}).get("idToken")
        return {"status": st._reserve(p["id"], p.get("evseId", 0), p["idToken"]["idToken"],
                                      group, p["expiryDateTime"])}

    def cancel_reservation(p: dict[str, Any]) -> dict[str, Any]:
        return {"status": st._cancel_reservation(p["reservationId"])}

    def update_firmware(p: dict[str, Any]) -> dict[str, Any]:
        fw = p["firmware"]
        st._update_firmware(p["requestId"], fw["location"], fw["retrieveDateTime"],
                            fw.get("signature"), fw.get("signingCertificate"))
        return {"status": "Accepted"}

    def publish_firmware(p: dict[str, Any]) -> dict[str, Any]:
        # L03: only a local controller publishes (an ordinary station rejects it)
        return {"status": st._publish_firmware(p["requestId"], p["location"], p["checksum"],
                                               p.get("retries"), p.get("retryInterval"))}

    def unpublish_firmware(p: dict[str, Any]) -> dict[str, Any]:
        return {"status": st._unpublish_firmware(p["checksum"])}  # L04

    def get_log(p: dict[str, Any]) -> dict[str, Any]:
        kind = {"DiagnosticsLog": "Diagnostics"}.get(p["logType"], p["logType"])
        name = st._upload_log(p["requestId"], kind, p["log"]["remoteLocation"])
        return {"status": "Accepted", "filename": name}

    return {
        "RequestStartTransaction": request_start,
        "RequestStopTransaction": request_stop,
        "GetVariables": get_variables,
        "SetVariables": set_variables,
        "GetLocalListVersion": get_local_list_version,
        "GetInstalledCertificateIds": get_installed_certificates,
        "GetBaseReport": get_base_report,
        "GetReport": get_report,
        "SetVariableMonitoring": set_monitoring,
        "ClearVariableMonitoring": clear_monitoring,
        "SetMonitoringBase": set_monitoring_base,
        "SetMonitoringLevel": set_monitoring_level,
        "GetMonitoringReport": get_monitoring_report,
        "ReserveNow": reserve_now,
        "CancelReservation": cancel_reservation,
        "UpdateFirmware": update_firmware,
        "GetLog": get_log,
        "PublishFirmware": publish_firmware,
        "UnpublishFirmware": unpublish_firmware,
    }


def _name(item: dict[str, Any]) -> str:
    """``Component.Variable`` (``Component@EVSE.Variable``) of a request entry."""
    evse = item["component"].get("evse")
    at = f"@{evse['id']}" if isinstance(evse, dict) and "id" in evse else ""
    return f"{item['component']['name']}{at}.{item['variable']['name']}"


def send_later(st: CallHandlers, action: str, payloads: list[dict[str, Any]]) -> None:
    """Send CALLs once the answer to the central system's CALL is out, in order."""
    async def send() -> None:
        await asyncio.sleep(0.05)  # the answer goes out first
        for payload in payloads:
            with contextlib.suppress(CallFailed, TimeoutError, ConnectionError):
                await st.call(action, payload)

    st._spawn(send(), action)


def charging_schedule(p: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    return int(p["evseId"]), p["chargingProfile"]["chargingSchedule"][0]


# -- load mode ---------------------------------------------------------------------------
async def load_start(st: StationCore, register: int) -> Any:
    txid = uuid.uuid4().hex[:20]
    await st.call("TransactionEvent", {
        "eventType": "Started", "timestamp": now(), "triggerReason": "Authorized",
        "seqNo": 0, "transactionInfo": {"transactionId": txid},
        "idToken": {"idToken": "LOADTAG", "type": "ISO14443"},
        "evse": {"id": 1, "connectorId": 1}})
    return txid


async def load_update(st: StationCore, txid: Any, seq: int, register: int) -> None:
    await st.call("TransactionEvent", {
        "eventType": "Updated", "timestamp": now(), "triggerReason": "MeterValuePeriodic",
        "seqNo": seq, "transactionInfo": {"transactionId": txid},
        "meterValue": [{"timestamp": now(), "sampledValue": [
            {"value": register, "measurand": "Energy.Active.Import.Register",
             "context": "Sample.Periodic", "unitOfMeasure": {"unit": "Wh"}},
            {"value": 11000, "measurand": "Power.Active.Import",
             "unitOfMeasure": {"unit": "W"}}]}]})


# -- reservations, firmware, logs ----------------------------------------------------------
def firmware_status_call(status: str, request_id: int | None,
                         signed: bool) -> tuple[str, dict[str, Any]]:
    payload: dict[str, Any] = {"status": status}
    if request_id is not None:
        payload["requestId"] = request_id
    return "FirmwareStatusNotification", payload


def log_status_call(status: str, request_id: int | None,
                    log_type: str) -> tuple[str, dict[str, Any]]:
    payload: dict[str, Any] = {"status": status}
    if request_id is not None:
        payload["requestId"] = request_id
    return "LogStatusNotification", payload


def reservation_expired_call(reservation_id: int) -> tuple[str, dict[str, Any]] | None:
    return "ReservationStatusUpdate", {"reservationId": reservation_id,
                                       "reservationUpdateStatus": "Expired"}


def uploads_by_form(log_type: str) -> bool:
    return False  # 2.0.1 N01: the file goes to remoteLocation (PUT)


def pnc_over_data_transfer() -> bool:
    """2.0.1 has the ISO 15118 messages themselves."""
    return False


# -- security events and external charging limits -----------------------------------------
def security_event_type(kind: str) -> str:
    """The 2.0.1 name of a security event (Part 2 appendix, Security Events): the names
    here are 2.0.1's already."""
    return kind


def charging_limit_call(watts: float, source: str, evse: int,
                        grid_critical: bool | None) -> tuple[str, dict[str, Any]] | None:
    """K11/K12: an external system (EMS, the grid operator...) set a limit; its schedule."""
    limit: dict[str, Any] = {"chargingLimitSource": source}
    if grid_critical is not None:
        limit["isGridCritical"] = grid_critical
    payload: dict[str, Any] = {"chargingLimit": limit, "chargingSchedule": [{
        "id": 1, "chargingRateUnit": "W", "startSchedule": now(),
        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": round(watts, 1)}]}]}
    if evse:
        payload["evseId"] = evse  # none: the whole station (evseId must be > 0)
    return "NotifyChargingLimit", payload


def charging_limit_cleared_call(source: str, evse: int) -> tuple[str, dict[str, Any]] | None:
    """K13: the external limit was released."""
    payload: dict[str, Any] = {"chargingLimitSource": source}
    if evse:
        payload["evseId"] = evse
    return "ClearedChargingLimit", payload


def charging_rate_changed(st: TransactionQueue, s: Session) -> None:
    """K12.FR.04 / K13: a limit changed the power of an ongoing transaction: a
    TransactionEvent Updated with triggerReason ChargingRateChanged."""
    st._enqueue("TransactionEvent", _tx_event(
        st, s, "Updated", "ChargingRateChanged",
        transactionInfo={"transactionId": s.transaction_id, "chargingState": "Charging"}), s)
