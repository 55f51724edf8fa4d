"""A 2.0.1 station's device model, as its reports describe it (2.0.1 part 1 §4, B06-B08,
N02-N07).

Theory of operation. The operator asks for a report (GetBaseReport / GetReport /
GetMonitoringReport): a request id is allocated per station and remembered. The station
answers with NotifyReport (NotifyMonitoringReport) in parts (``seqNo``, ``tbc``); each part
of a request this central system made is stored at once as rows, one per component,
variable and attribute type (the latest report wins), so a report cut short still leaves
what arrived. A part for a request id the station never got is not stored (recorded as a
security event, within the station's security quota: a station inventing request ids
added a row per message); a station's model is bounded (:data:`MAX_VARIABLES` rows, and as
many monitors) and reports are metered under the notification quota (csms.service.quota),
the first part beyond it in an hour noted (a note per part was a row per message).
SetVariables / GetVariables are checked against the stored model before they are sent
(:meth:`DeviceModel.check_set`):
an unknown component or variable, a ReadOnly one, a value of the wrong data type, beyond
its limits or outside its values list is refused with one line. What the station answers
is written back.

A 1.6 station has no device model, only configuration keys (1.6 §9): the answer of each
GetConfiguration the central system sends is stored in the same rows, one per key, under
component :data:`OCPP16` (``OCPP16.HeartbeatInterval``): ``readonly`` gives mutability
ReadOnly (else ReadWrite), no data type (1.6 has none), and a key in ``unknownKey`` is
kept with ``unknown`` set. An answer to a GetConfiguration of every key replaces the
component; one for named keys updates those. Keys over 50 characters, values over 500
(1.6 §7.13 KeyValue), and the second of two entries with the same key are not stored (a
security event says how many); the row quota holds as for reports. ChangeConfiguration
is checked against the stored keys before it is sent (:meth:`DeviceModel.check_change`):
a ReadOnly key is refused, a key the station did not report goes out with a warning.

A row's key (``var_key``) is how an operator names it: ``Component.Variable``, with
``[instance]`` after a name that has one, ``@EVSE`` or ``@EVSE:connector`` after the
component, and ``/Target``, ``/MinSet``, ``/MaxSet`` for an attribute other than Actual.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from csms.service.messages import utc_now
from csms.service.ports import Repository, Tx
from csms.service.quota import PayloadQuota, Verdict

__all__ = ["MAX_VARIABLES", "OCPP16", "PNC_KEY", "PNC_OPTION", "DeviceModel", "ModelRefusal",
           "is_secret_name", "rows_from_configuration", "rows_from_report", "var_key"]

log = logging.getLogger("csms.service")

# rows of one station's device model; a real station reports a few hundred
MAX_VARIABLES = 5000
# the component a 1.6 station's configuration keys are stored under
OCPP16 = "OCPP16"
# 1.6 §7.13 KeyValue / §6.9 ChangeConfiguration: CiString50 key, CiString500 value
MAX_KEY_16 = 50
MAX_VALUE_16 = 500
# the station option an operator sets for Plug & Charge over 1.6, and the configuration key
# a station announces it with (OCA "Using ISO 15118 Plug & Charge with OCPP 1.6" §2.1)
PNC_OPTION = "pnc"
PNC_KEY = "ISO15118PnCEnabled"
MONITOR_TYPES = ("UpperThreshold", "LowerThreshold", "Delta", "Periodic",
                 "PeriodicClockAligned")


# Configuration keys (1.6) and variables (2.0.1) that hold a credential: the 1.6
# security whitepaper's AuthorizationKey, 2.0.1 SecurityCtrlr.BasicAuthPassword, and
# by name anything that looks like a password or a secret. Their values are never
# stored in the device model, whoever gives them (a station's report or answer, the
# operator's command), nor quoted in a refusal.
_SECRET_NAME = re.compile(r"password|passphrase|secret|authorizationkey", re.IGNORECASE)


def is_secret_name(name: str) -> bool:
    """A configuration key or COMPONENT.VARIABLE name whose value is a credential."""
    return bool(_SECRET_NAME.search(name))


class ModelRefusal(ValueError):
    """A command the stored device model says the station cannot take (one line)."""


def var_key(component: dict[str, Any], variable: dict[str, Any],
            attribute_type: str = "Actual") -> str:
    name = str(component.get("name", ""))
    if component.get("instance"):
        name += f"[{component['instance']}]"
    evse = component.get("evse")
    if isinstance(evse, dict) and "id" in evse:
        name += f"@{evse['id']}" + (f":{evse['connectorId']}" if "connectorId" in evse else "")
    name += "." + str(variable.get("name", ""))
    if variable.get("instance"):
        name += f"[{variable['instance']}]"
    if attribute_type and attribute_type != "Actual":
        name += f"/{attribute_type}"
    return name


_KEY = re.compile(r"^(?P<c>[^.\[@]+)(\[(?P<ci>[^\]]*)\])?(@(?P<e>\d+)(:(?P<k>\d+))?)?"
                  r"\.(?P<v>[^.\[/]+)(\[(?P<vi>[^\]]*)\])?(/(?P<t>Target|MinSet|MaxSet))?$")


def parse_key(text: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    """(component, variable, attribute type) of a name as :func:`var_key` writes it."""
    m = _KEY.match(text)
    if m is None:
        raise ModelRefusal(f"expected COMPONENT.VARIABLE, got {text!r}")
    component: dict[str, Any] = {"name": m["c"]}
    if m["ci"]:
        component["instance"] = m["ci"]
    if m["e"]:
        component["evse"] = {"id": int(m["e"])}
        if m["k"]:
            component["evse"]["connectorId"] = int(m["k"])
    variable: dict[str, Any] = {"name": m["v"]}
    if m["vi"]:
        variable["instance"] = m["vi"]
    return component, variable, m["t"] or "Actual"


def _text(value: Any, limit: int) -> str | None:
    return None if value is None else str(value)[:limit]


def rows_from_report(report_data: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """ReportDataType entries -> device model rows (one per attribute); the value of a
    credential (:func:`is_secret_name`: a station may report BasicAuthPassword's, though
    write-only) is not stored."""
    rows = []
    for item in report_data:
        component, variable = item["component"], item["variable"]
        chars = item.get("variableCharacteristics") or {}
        evse = component.get("evse") or {}
        secret = is_secret_name(f"{component.get('name', '')}.{variable.get('name', '')}")
        for attr in item.get("variableAttribute") or [{}]:
            kind = attr.get("type", "Actual")
            rows.append({
                "var_key": var_key(component, variable, kind)[:300],
                "component": str(component["name"]),
                "component_instance": component.get("instance"),
                "evse_id": evse.get("id"), "connector_id": evse.get("connectorId"),
                "variable": str(variable["name"]),
                "variable_instance": variable.get("instance"),
                "attribute_type": kind,
                "value": None if secret else _text(attr.get("value"), 2500),
                "mutability": attr.get("mutability", "ReadWrite"),
                "data_type": chars.get("dataType"),
                "unit": chars.get("unit"),
                "min_limit": _text(chars.get("minLimit"), 64),
                "max_limit": _text(chars.get("maxLimit"), 64),
                "values_list": _text(chars.get("valuesList"), 1000),
                "supports_monitoring": None if "supportsMonitoring" not in chars
                else int(bool(chars["supportsMonitoring"])),
            })
    return rows


def _config_row(key: str, value: str | None, mutability: str | None,
                unknown: bool = False) -> dict[str, Any]:
    return {"var_key": f"{OCPP16}.{key}", "component": OCPP16, "component_instance": None,
            "evse_id": None, "connector_id": None, "variable": key,
            "variable_instance": None, "attribute_type": "Actual", "value": value,
            "mutability": mutability, "data_type": None, "unit": None, "min_limit": None,
            "max_limit": None, "values_list": None, "supports_monitoring": None,
            "unknown": 1 if unknown else None}


def rows_from_configuration(response: dict[str, Any], hidden: Callable[[str], bool]
                            = lambda key: False) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """A 1.6 GetConfiguration answer -> (device model rows, what was not stored: counts
    of over-long keys, over-long values, duplicates, unreadable entries). The value of a
    key ``hidden`` says holds a credential is not stored."""
    rows: dict[str, dict[str, Any]] = {}
    dropped = {"long_key": 0, "long_value": 0, "duplicate": 0, "unreadable": 0}
    entries = response.get("configurationKey")
    for item in entries if isinstance(entries, list) else []:
        key = item.get("key") if isinstance(item, dict) else None
        value = item.get("value") if isinstance(item, dict) else None
        if not isinstance(key, str) or not key or not isinstance(value, str | None):
            dropped["unreadable"] += 1
        elif len(key) > MAX_KEY_16:
            dropped["long_key"] += 1
        elif value is not None and len(value) > MAX_VALUE_16:
            dropped["long_value"] += 1
        elif key.lower() in rows:  # CiString: keys differ in more than case
            dropped["duplicate"] += 1
        else:
            rows[key.lower()] = _config_row(key, None if hidden(key) else value,
                                    "ReadOnly" if item.get("readonly") is True
                                    else "ReadWrite")
    unknown = response.get("unknownKey")
    for key in unknown if isinstance(unknown, list) else []:
        if not isinstance(key, str) or not key:
            dropped["unreadable"] += 1
        elif len(key) > MAX_KEY_16:
            dropped["long_key"] += 1
        elif key.lower() in rows:
            dropped["duplicate"] += 1
        else:
            rows[key.lower()] = _config_row(key, None, None, unknown=True)
    return list(rows.values()), {k: n for k, n in dropped.items() if n}


def _number(text: str | None) -> Decimal | None:
    if text is None:
        return None
    try:
        return Decimal(text)
    except InvalidOperation:
        return None


def check_value(row: dict[str, Any], value: str) -> str | None:
    """Why ``value`` does not fit the row's characteristics (2.0.1 part 2 §2.48,
    DataEnumType), or None."""
    kind = row.get("data_type")
    number: Decimal | None = None
    if kind == "integer":
        if not re.fullmatch(r"[+-]?[0-9]{1,19}", value):
            return "an integer"
        number = Decimal(value)
    elif kind == "decimal":
        number = _number(value)
        if number is None or not number.is_finite():
            return "a decimal number"
    elif kind == "boolean":
        if value not in ("true", "false"):
            return "true or false"
    elif kind == "dateTime":
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return "an RFC 3339 time"
    allowed = [v for v in (row.get("values_list") or "").split(",") if v]
    if kind == "OptionList" and allowed and value not in allowed:
        return f"one of {', '.join(allowed)}"
    if kind in ("MemberList", "SequenceList") and allowed:
        bad = [v for v in value.split(",") if v and v not in allowed]
        if bad:
            return f"members of {', '.join(allowed)}"
    if number is not None:
        low, high = _number(row.get("min_limit")), _number(row.get("max_limit"))
        if low is not None and number < low:
            return f"at least {row['min_limit']}"
        if high is not None and number > high:
            return f"at most {row['max_limit']}"
    longest = _number(row.get("max_limit")) if kind == "string" else None
    if longest is not None and len(value) > longest:
        return f"at most {row['max_limit']} characters"
    return None


# (tx, station, kind, payload, at) -> stored: a station event within its quota (the
# charging service's metered_event, csms.service.core)
MeteredEvent = Callable[[Tx, str, str, dict[str, Any], datetime], Awaitable[bool]]


@dataclass
class DeviceModel:
    """The device model use cases (see the module docstring)."""

    repo: Repository
    quota: PayloadQuota | None = None
    clock: Callable[[], datetime] = utc_now
    max_variables: int = MAX_VARIABLES
    # how a station event its messages cause is stored and a payload charged: within
    # its quota, a drop counted (the charging service's metered_event and admit_payload,
    # csms.service.core); None: as they are, with ``quota`` (the operator's tools)
    metered: MeteredEvent | None = None
    admit: Callable[[str, str, int], Verdict] | None = None

    # -- reports ---------------------------------------------------------------------
    async def request_report(self, station_id: str, kind: str) -> int:
        """A request id for a report of ``kind`` (base, custom, monitoring)."""
        now = self.clock()

        async def work(tx: Tx) -> int:
            return await tx.add_report_request(station_id, kind, now)

        return await self.repo.unit(work)

    def _admit(self, station_id: str, payload: dict[str, Any]) -> bool | None:
        """Whether a part is within the notification quota: True, False, or None when
        it is the station's first dropped this hour (worth a note)."""
        admit = self.admit or (self.quota.admit if self.quota is not None else None)
        if admit is None:
            return True
        size = len(json.dumps(payload, separators=(",", ":"), default=str))
        verdict = admit(station_id, "notification", size)
        return True if verdict.store else None if verdict.first_drop else False

    async def _event(self, tx: Tx, station_id: str, kind: str, payload: dict[str, Any],
                     now: datetime) -> bool:
        if self.metered is not None:
            return await self.metered(tx, station_id, kind, payload, now)
        await tx.add_station_event(station_id, kind, payload, now)
        return True

    async def notify_report(self, station_id: str, p: dict[str, Any],
                            kind: str = "report") -> str:
        """Store one part of a NotifyReport (``kind`` "report") or NotifyMonitoringReport
        ("monitoring"); returns what happened: stored, unsolicited, quota, full."""
        now = self.clock()
        request_id, seq_no, tbc = int(p["requestId"]), int(p["seqNo"]), bool(p.get("tbc"))

        async def work(tx: Tx) -> tuple[str, bool]:
            request = await tx.get_report_request(station_id, request_id)
            if request is None or (request["kind"] == "monitoring") != (kind == "monitoring"):
                return "unsolicited", await self._event(tx, station_id, "security", {
                    "type": "UnsolicitedReport", "requestId": request_id, "kind": kind}, now)
            admitted = self._admit(station_id, p)
            if not admitted:
                if admitted is None:  # the first this hour: one note, not one per part
                    await tx.add_station_event(station_id, "quota", {
                        "type": "ReportDropped", "requestId": request_id, "seqNo": seq_no},
                        now)
                return "quota", admitted is None
            if kind == "monitoring":
                await self._store_monitors(tx, station_id,
                                           monitor_rows(p.get("monitor") or []), now)
            else:
                await self._store_bounded(tx, station_id,
                                          rows_from_report(p.get("reportData") or []), now)
            await tx.report_part_received(station_id, request_id, seq_no, not tbc, now)
            return "stored", True

        outcome, noted = await self.repo.unit(work)
        if outcome != "stored" and noted:  # what is not noted is counted (metrics)
            log.warning("! %s: %s part %d of request %d not stored (%s)", station_id, kind,
                        seq_no, request_id, outcome)
        return outcome

    async def _store_bounded(self, tx: Tx, station_id: str, rows: list[dict[str, Any]],
                             now: datetime) -> None:
        """Upsert variable rows within the station's row quota (new rows beyond it are
        dropped and noted; rows already stored are always updated)."""
        rows = await self._within_bound(tx, station_id, rows, now, "var_key",
                                        tx.count_device_variables, tx.device_variables,
                                        "DeviceModelFull")
        await tx.upsert_device_variables(station_id, rows, now)

    async def _store_monitors(self, tx: Tx, station_id: str, rows: list[dict[str, Any]],
                              now: datetime) -> None:
        """Upsert monitors within the same bound (``max_variables``: the ids are the
        station's, each new one was a row), as :meth:`_store_bounded` does variables."""
        rows = await self._within_bound(tx, station_id, rows, now, "monitor_id",
                                        tx.count_monitors, tx.list_monitors, "MonitorsFull")
        await tx.upsert_monitors(station_id, rows, now)

    async def _within_bound(
        self, tx: Tx, station_id: str, rows: list[dict[str, Any]], now: datetime, key: str,
        count: Callable[[str], Awaitable[int]],
        stored: Callable[[str], Awaitable[list[dict[str, Any]]]], full: str,
    ) -> list[dict[str, Any]]:
        """``rows`` (identified by ``key``) less the new ones beyond ``max_variables`` rows
        of the station (``count`` and ``stored`` read them): the first new ones in the
        report's order are kept, the others dropped and noted (``full``, a quota event)."""
        have = await count(station_id)
        if have + len(rows) <= self.max_variables:
            return rows
        known = {r[key] for r in await stored(station_id)}
        fresh = list(dict.fromkeys(r[key] for r in rows if r[key] not in known))
        room = max(0, self.max_variables - have)
        if len(fresh) <= room:
            return rows
        await tx.add_station_event(station_id, "quota", {
            "type": full, "limit": self.max_variables, "dropped": len(fresh) - room}, now)
        keep = set(fresh[:room]) | known
        return [r for r in rows if r[key] in keep]

    # -- a 1.6 station's configuration -----------------------------------------------------
    async def record_configuration(self, station_id: str, response: dict[str, Any],
                                   asked: list[str] | None = None,
                                   hidden: Callable[[str], bool] = lambda key: False) -> int:
        """Store a GetConfiguration answer (``asked``: the keys the request named; none:
        every key, and the stored configuration is replaced). The number of rows stored."""
        now = self.clock()
        rows, dropped = rows_from_configuration(response, hidden)

        async def work(tx: Tx) -> None:
            if not asked:
                await tx.delete_device_variables(station_id, OCPP16)
            await self._store_bounded(tx, station_id, rows, now)
            if dropped:
                await tx.add_station_event(station_id, "security", {
                    "type": "ConfigurationNotStored", **dropped}, now)

        await self.repo.unit(work)
        if dropped:
            log.warning("! %s: configuration entries not stored: %s", station_id, dropped)
        return len(rows)

    async def plug_and_charge(self, station_id: str) -> bool:
        """Whether a 1.6 station takes ISO 15118 Plug & Charge over DataTransfer: the
        operator said so (station option ``pnc``: on / off), else the station reported
        the configuration key ISO15118PnCEnabled (the OCA application note §2.1: a
        station that has the key supports it)."""
        async def work(tx: Tx) -> tuple[str | None, list[dict[str, Any]]]:
            return (await tx.get_station_option(station_id, PNC_OPTION),
                    await tx.device_variables(station_id, OCPP16))

        option, rows = await self.repo.read(work)
        if option is not None:
            return option == "on"
        return any(r["variable"].lower() == PNC_KEY.lower() and not r.get("unknown")
                   for r in rows)

    async def configuration_known(self, station_id: str) -> bool:
        """Whether a 1.6 station's configuration is stored."""
        return bool(await self.variables(station_id, OCPP16))

    async def check_change(self, station_id: str, key: str, value: str) -> str | None:
        """Refuse (:class:`ModelRefusal`) a ChangeConfiguration the stored configuration
        says fails (a ReadOnly key, a key or value beyond 1.6's lengths); a warning
        (one line) for a key the station did not report, None when it did."""
        if len(key) > MAX_KEY_16:
            raise ModelRefusal(f"a 1.6 configuration key has at most {MAX_KEY_16}"
                               f" characters ({len(key)} given)")
        if len(value) > MAX_VALUE_16:
            raise ModelRefusal(f"a 1.6 configuration value has at most {MAX_VALUE_16}"
                               f" characters ({len(value)} given)")
        rows = {r["variable"].lower(): r for r in await self.variables(station_id, OCPP16)}
        row = rows.get(key.lower())
        if row is None or row.get("unknown"):
            where = "did not report" if rows else "has no stored configuration for"
            return (f"{station_id} {where} {key!r} (csms remote get-config);"
                    " sent anyway: 1.6 has no type information to check it against")
        if row["mutability"] == "ReadOnly":
            raise ModelRefusal(f"{key} is ReadOnly on {station_id}")
        return None

    async def configuration_changed(self, station_id: str, key: str,
                                    value: str | None) -> None:
        """A ChangeConfiguration the station answered Accepted or RebootRequired: the
        stored value follows (``value`` None: a credential, not stored)."""
        now = self.clock()

        async def work(tx: Tx) -> None:
            rows = {r["variable"].lower(): r
                    for r in await tx.device_variables(station_id, OCPP16)}
            row = rows.get(key.lower())
            if row is None or row.get("unknown"):
                # the station took it, so it has the key (writable)
                await self._store_bounded(
                    tx, station_id, [_config_row(key, value, "ReadWrite")], now)
            elif value is not None:
                await tx.set_device_value(station_id, row["var_key"], value, now)

        await self.repo.unit(work)

    # -- what the operator sends ---------------------------------------------------------
    async def variables(self, station_id: str,
                        component: str | None = None) -> list[dict[str, Any]]:
        async def work(tx: Tx) -> list[dict[str, Any]]:
            return await tx.device_variables(station_id, component)

        return await self.repo.read(work)

    async def check_set(self, station_id: str, values: dict[str, Any]) -> None:
        """Refuse (:class:`ModelRefusal`) a SetVariables the stored model says fails; a
        station with no stored model is not checked."""
        rows = {r["var_key"]: r for r in await self.variables(station_id)}
        if not rows:
            return
        for name, value in values.items():
            parse_key(str(name))
            row = rows.get(str(name))
            if row is None:
                component = str(name).split(".", 1)[0].split("[")[0].split("@")[0]
                if not any(r["component"] == component for r in rows.values()):
                    raise ModelRefusal(f"{station_id} has no component {component!r}"
                                       " in its device model (csms stations variables)")
                raise ModelRefusal(f"{station_id} has no variable {name!r} in its device"
                                   " model (csms stations variables)")
            if row["mutability"] == "ReadOnly":
                raise ModelRefusal(f"{name} is ReadOnly on {station_id}")
            why = check_value(row, str(value))
            if why is not None:
                # a credential is not quoted: the refusal is the command's answer, audited
                shown = "<redacted>" if is_secret_name(str(name)) else repr(str(value)[:40])
                raise ModelRefusal(f"{name}={shown}: {name} takes {why}")

    async def check_get(self, station_id: str, names: list[str]) -> None:
        rows = {r["var_key"]: r for r in await self.variables(station_id)}
        if not rows:
            return
        for name in names:
            parse_key(str(name))
            row = rows.get(str(name))
            if row is None:
                raise ModelRefusal(f"{station_id} has no variable {name!r} in its device"
                                   " model (csms stations variables)")
            if row["mutability"] == "WriteOnly":
                raise ModelRefusal(f"{name} is WriteOnly on {station_id}")

    async def record_results(self, station_id: str, response: dict[str, Any],
                             sent: dict[str, Any] | None = None) -> None:
        """Write back what a GetVariables / SetVariables answer says was read or set; a
        credential's value (a password read back, or the new one set) is not stored."""
        now = self.clock()
        updates: dict[str, str] = {}
        for r in response.get("getVariableResult") or []:
            if r.get("attributeStatus") == "Accepted" and "attributeValue" in r:
                key = var_key(r["component"], r["variable"], r.get("attributeType", "Actual"))
                if not is_secret_name(key):
                    updates[key] = str(r["attributeValue"])
        for r in response.get("setVariableResult") or []:
            key = var_key(r["component"], r["variable"], r.get("attributeType", "Actual"))
            if r.get("attributeStatus") == "Accepted" and sent and key in sent \
                    and not is_secret_name(key):
                updates[key] = str(sent[key])
        if not updates:
            return

        async def work(tx: Tx) -> None:
            for key, value in updates.items():
                await tx.set_device_value(station_id, key, value, now)

        await self.repo.unit(work)

    # -- monitors ------------------------------------------------------------------------
    async def monitors_set(self, station_id: str, sent: list[dict[str, Any]],
                           response: dict[str, Any]) -> None:
        """Keep the monitors a SetVariableMonitoring answer accepted, with the ids the
        station gave them (results come in the order of the request, 2.0.1 N04.FR.07)."""
        now = self.clock()
        results = response.get("setMonitoringResult") or []
        rows = [{"monitor_id": int(r["id"]), "component": str(r["component"]["name"]),
                 "variable": str(r["variable"]["name"]),
                 "var_key": var_key(r["component"], r["variable"])[:300],
                 "type": str(r["type"]), "value": str(d.get("value", "")),
                 "severity": int(r["severity"]), "in_transaction": int(bool(
                     d.get("transaction", False)))}
                for r, d in zip(results, sent, strict=False)
                if r.get("status") == "Accepted" and "id" in r]
        if rows:
            async def work(tx: Tx) -> None:
                await tx.upsert_monitors(station_id, rows, now)

            await self.repo.unit(work)

    async def monitors_cleared(self, station_id: str, response: dict[str, Any]) -> None:
        ids = [int(r["id"]) for r in response.get("clearMonitoringResult") or []
               if r.get("status") in ("Accepted", "NotFound")]
        if ids:
            async def work(tx: Tx) -> None:
                await tx.delete_monitors(station_id, ids)

            await self.repo.unit(work)

    async def monitors(self, station_id: str) -> list[dict[str, Any]]:
        async def work(tx: Tx) -> list[dict[str, Any]]:
            return await tx.list_monitors(station_id)

        return await self.repo.read(work)


def monitor_rows(monitor: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """MonitoringDataType entries (NotifyMonitoringReport) -> monitor rows."""
    rows = []
    for item in monitor:
        for m in item.get("variableMonitoring") or []:
            rows.append({
                "monitor_id": int(m["id"]), "component": str(item["component"]["name"]),
                "variable": str(item["variable"]["name"]),
                "var_key": var_key(item["component"], item["variable"])[:300],
                "type": str(m["type"]), "value": str(m["value"]),
                "severity": int(m["severity"]), "in_transaction": int(bool(m["transaction"]))})
    return rows
