"""Certificates issued to stations and the 2.0.1 device model, in portable SQL.

A mixin of :class:`csms.storage.sql.SqlTx`, like :mod:`csms.storage.settlement_sql`: the
use cases (csms.service.certificates, csms.service.device_model) reach these tables only
through these named methods of the storage port.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import UTC, datetime
from typing import Any

__all__ = ["VARIABLE_COLUMNS", "DeviceSql"]

# the columns of a device model row a report sets (csms.service.device_model.VariableRow)
VARIABLE_COLUMNS = (
    "var_key", "component", "component_instance", "evse_id", "connector_id", "variable",
    "variable_instance", "attribute_type", "value", "mutability", "data_type", "unit",
    "min_limit", "max_limit", "values_list", "supports_monitoring", "unknown",
)
MONITOR_COLUMNS = ("monitor_id", "component", "variable", "var_key", "type", "value",
                   "severity", "in_transaction")


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def _cert(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for name in ("not_before", "not_after", "issued_at", "renewal_requested_at"):
        if out.get(name) is not None:
            out[name] = datetime.fromisoformat(out[name])
    return out


class DeviceSql(ABC):
    @abstractmethod
    async def execute(self, sql: str, *params: Any) -> int: ...

    @abstractmethod
    async def fetchone(self, sql: str, *params: Any) -> dict[str, Any] | None: ...

    @abstractmethod
    async def fetchall(self, sql: str, *params: Any) -> list[dict[str, Any]]: ...

    # -- certificates --------------------------------------------------------------------
    async def add_issued_certificate(self, serial: str, station_id: str, not_before: datetime,
                                     not_after: datetime, pem: str, at: datetime,
                                     certificate_type: str | None = None) -> None:
        await self.execute(
            "INSERT INTO issued_certificates (serial, station_id, not_before, not_after, pem,"
            " issued_at, certificate_type) VALUES (?, ?, ?, ?, ?, ?, ?)",
            serial, station_id, _iso(not_before), _iso(not_after), pem, _iso(at),
            certificate_type)

    async def set_certificate_status(self, serial: str, status: str) -> None:
        await self.execute("UPDATE issued_certificates SET status = ? WHERE serial = ?",
                           status, serial)

    async def get_issued_certificate(self, serial: str) -> dict[str, Any] | None:
        row = await self.fetchone("SELECT * FROM issued_certificates WHERE serial = ?", serial)
        return None if row is None else _cert(row)

    async def list_issued_certificates(self, station_id: str | None = None,
                                       limit: int = 1000) -> list[dict[str, Any]]:
        if station_id is None:
            rows = await self.fetchall(
                "SELECT * FROM issued_certificates ORDER BY issued_at DESC LIMIT ?", limit)
        else:
            rows = await self.fetchall(
                "SELECT * FROM issued_certificates WHERE station_id = ?"
                " ORDER BY issued_at DESC LIMIT ?", station_id, limit)
        return [_cert(r) for r in rows]

    async def certificates_expiring(self, before: datetime) -> list[dict[str, Any]]:
        """The newest certificate of each station that the station did not refuse, when
        it expires before ``before`` and no renewal was asked for since."""
        rows = await self.fetchall(
            "SELECT c.* FROM issued_certificates c WHERE c.status <> 'Rejected'"
            " AND c.certificate_type IS NULL"
            " AND c.renewal_requested_at IS NULL AND c.not_after < ?"
            " AND NOT EXISTS (SELECT 1 FROM issued_certificates n"
            " WHERE n.station_id = c.station_id AND n.status <> 'Rejected'"
            " AND n.certificate_type IS NULL AND n.not_after > c.not_after)"
            " ORDER BY c.not_after", _iso(before))
        return [_cert(r) for r in rows]

    async def mark_renewal_requested(self, serial: str, at: datetime) -> None:
        await self.execute(
            "UPDATE issued_certificates SET renewal_requested_at = ? WHERE serial = ?",
            _iso(at), serial)

    # -- reports asked for ---------------------------------------------------------------
    async def add_report_request(self, station_id: str, kind: str, at: datetime) -> int:
        """A new report request of the station (its requestId: one more than the last)."""
        row = await self.fetchone(
            "SELECT max(request_id) AS n FROM report_requests WHERE station_id = ?",
            station_id)
        request_id = int(row["n"] or 0) + 1 if row is not None else 1
        await self.execute(
            "INSERT INTO report_requests (station_id, request_id, kind, requested_at)"
            " VALUES (?, ?, ?, ?)", station_id, request_id, kind, _iso(at))
        return request_id

    async def get_report_request(self, station_id: str,
                                 request_id: int) -> dict[str, Any] | None:
        return await self.fetchone(
            "SELECT * FROM report_requests WHERE station_id = ? AND request_id = ?",
            station_id, request_id)

    async def report_part_received(self, station_id: str, request_id: int, seq_no: int,
                                   complete: bool, at: datetime) -> None:
        await self.execute(
            "UPDATE report_requests SET last_seq_no = ?, parts = parts + 1,"
            " completed_at = ? WHERE station_id = ? AND request_id = ?",
            seq_no, _iso(at) if complete else None, station_id, request_id)

    # -- device model --------------------------------------------------------------------
    async def upsert_device_variables(self, station_id: str, rows: list[dict[str, Any]],
                                      at: datetime) -> None:
        """Rows of a report, the latest wins (one per station and var_key)."""
        columns = ", ".join(VARIABLE_COLUMNS)
        marks = ", ".join("?" for _ in VARIABLE_COLUMNS)
        updates = ", ".join(f"{c} = excluded.{c}" for c in VARIABLE_COLUMNS[1:])
        for row in rows:
            await self.execute(
                f"INSERT INTO device_variables (station_id, {columns}, updated_at)"
                f" VALUES (?, {marks}, ?) ON CONFLICT (station_id, var_key) DO UPDATE SET"
                f" {updates}, updated_at = excluded.updated_at",
                station_id, *(row.get(c) for c in VARIABLE_COLUMNS), _iso(at))

    async def set_device_value(self, station_id: str, var_key: str, value: str,
                               at: datetime) -> None:
        await self.execute(
            "UPDATE device_variables SET value = ?, updated_at = ?"
            " WHERE station_id = ? AND var_key = ?", value, _iso(at), station_id, var_key)

    async def device_variables(self, station_id: str,
                               component: str | None = None) -> list[dict[str, Any]]:
        if component is None:
            return await self.fetchall(
                "SELECT * FROM device_variables WHERE station_id = ? ORDER BY var_key",
                station_id)
        return await self.fetchall(
            "SELECT * FROM device_variables WHERE station_id = ? AND component = ?"
            " ORDER BY var_key", station_id, component)

    async def delete_device_variables(self, station_id: str, component: str) -> int:
        """Forget a component of the station's model (a 1.6 station's full configuration
        replaces the one stored before)."""
        return await self.execute(
            "DELETE FROM device_variables WHERE station_id = ? AND component = ?",
            station_id, component)

    async def count_device_variables(self, station_id: str) -> int:
        row = await self.fetchone(
            "SELECT count(*) AS n FROM device_variables WHERE station_id = ?", station_id)
        return int(row["n"]) if row is not None else 0

    # -- monitors ------------------------------------------------------------------------
    async def upsert_monitors(self, station_id: str, rows: list[dict[str, Any]],
                              at: datetime) -> None:
        columns = ", ".join(MONITOR_COLUMNS)
        marks = ", ".join("?" for _ in MONITOR_COLUMNS)
        updates = ", ".join(f"{c} = excluded.{c}" for c in MONITOR_COLUMNS[1:])
        for row in rows:
            await self.execute(
                f"INSERT INTO variable_monitors (station_id, {columns}, updated_at)"
                f" VALUES (?, {marks}, ?) ON CONFLICT (station_id, monitor_id) DO UPDATE SET"
                f" {updates}, updated_at = excluded.updated_at",
                station_id, *(row.get(c) for c in MONITOR_COLUMNS), _iso(at))

    async def delete_monitors(self, station_id: str, ids: list[int]) -> None:
        for monitor_id in ids:
            await self.execute(
                "DELETE FROM variable_monitors WHERE station_id = ? AND monitor_id = ?",
                station_id, monitor_id)

    async def list_monitors(self, station_id: str) -> list[dict[str, Any]]:
        return await self.fetchall(
            "SELECT * FROM variable_monitors WHERE station_id = ? ORDER BY monitor_id",
            station_id)

    async def count_monitors(self, station_id: str) -> int:
        row = await self.fetchone(
            "SELECT count(*) AS n FROM variable_monitors WHERE station_id = ?", station_id)
        return int(row["n"]) if row is not None else 0
