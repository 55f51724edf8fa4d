"""Certificates issued and the device model, on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from csms.service.device_model import rows_from_report
from csms.service.ports import Repository, Tx

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


async def test_issued_certificates_and_renewal(repo: Repository) -> None:
    async def work(tx: Tx) -> None:
        await tx.add_issued_certificate("a1", "CP1", T0, T0 + timedelta(days=30), "PEM1", T0)
        await tx.add_issued_certificate("b2", "CP1", T0, T0 + timedelta(days=60), "PEM2",
                                        T0 + timedelta(seconds=1))
        await tx.add_issued_certificate("c3", "CP2", T0, T0 + timedelta(days=10), "PEM3", T0)
        await tx.set_certificate_status("b2", "Rejected")

    await repo.unit(work)

    async def due(tx: Tx) -> list[str]:
        return [r["serial"] for r in await tx.certificates_expiring(T0 + timedelta(days=40))]

    # CP1's newest accepted one is a1 (b2 was refused by the station); CP2's is c3
    assert await repo.read(due) == ["c3", "a1"]
    await repo.unit(lambda tx: tx.mark_renewal_requested("a1", T0))
    assert await repo.read(due) == ["c3"]
    row: Any = await repo.read(lambda tx: tx.get_issued_certificate("a1"))
    assert row["not_after"] == T0 + timedelta(days=30) and row["renewal_requested_at"] == T0
    assert row["status"] == "Issued" and row["pem"] == "PEM1"
    listed = await repo.read(lambda tx: tx.list_issued_certificates("CP1"))
    assert [r["serial"] for r in listed] == ["b2", "a1"]  # newest first
    assert await repo.read(lambda tx: tx.get_issued_certificate("zz")) is None


async def test_device_model_rows_requests_and_monitors(repo: Repository) -> None:
    report = [{"component": {"name": "EVSE", "evse": {"id": 1}}, "variable": {"name": "Power"},
               "variableAttribute": [{"value": "7400", "mutability": "ReadOnly"},
                                     {"type": "MaxSet", "value": "11000"}],
               "variableCharacteristics": {"dataType": "decimal", "unit": "W",
                                           "maxLimit": 22000, "supportsMonitoring": True}}]

    async def work(tx: Tx) -> tuple[int, int]:
        first = await tx.add_report_request("CP1", "base", T0)
        second = await tx.add_report_request("CP1", "monitoring", T0)
        await tx.report_part_received("CP1", first, 0, False, T0)
        await tx.report_part_received("CP1", first, 1, True, T0)
        await tx.upsert_device_variables("CP1", rows_from_report(report), T0)
        await tx.upsert_device_variables("CP1", rows_from_report(report), T0)  # latest wins
        await tx.set_device_value("CP1", "EVSE@1.Power", "7000", T0)
        await tx.upsert_monitors("CP1", [{
            "monitor_id": 3, "component": "EVSE", "variable": "Power", "var_key": "EVSE@1.Power",
            "type": "Delta", "value": "100", "severity": 5, "in_transaction": 1}], T0)
        await tx.upsert_monitors("CP1", [{
            "monitor_id": 3, "component": "EVSE", "variable": "Power", "var_key": "EVSE@1.Power",
            "type": "Delta", "value": "200", "severity": 4, "in_transaction": 0}], T0)
        return first, second

    first, second = await repo.unit(work)
    assert (first, second) == (1, 2)
    request: Any = await repo.read(lambda tx: tx.get_report_request("CP1", first))
    assert (request["parts"], request["last_seq_no"], request["completed_at"] is not None) == (
        2, 1, True)
    rows = await repo.read(lambda tx: tx.device_variables("CP1"))
    assert [(r["var_key"], r["value"], r["max_limit"]) for r in rows] == [
        ("EVSE@1.Power", "7000", "22000"), ("EVSE@1.Power/MaxSet", "11000", "22000")]
    assert rows[0]["evse_id"] == 1 and rows[0]["supports_monitoring"] == 1
    assert await repo.read(lambda tx: tx.count_device_variables("CP1")) == 2
    assert await repo.read(lambda tx: tx.device_variables("CP1", "Nope")) == []
    [monitor] = await repo.read(lambda tx: tx.list_monitors("CP1"))
    assert (monitor["value"], monitor["severity"]) == ("200", 4)
    await repo.unit(lambda tx: tx.delete_monitors("CP1", [3, 4]))
    assert await repo.read(lambda tx: tx.list_monitors("CP1")) == []


async def test_credentials_stored_before_are_forgotten(db: str) -> None:
    """Migration 0359: a 2.0.1 station's password its device model kept in clear (a report
    or a GetVariables answer that gave it, a set-variables of it the station accepted) is
    dropped from the rows; the rows and every other value stay."""
    from csms.storage import open_repository

    report = [{"component": {"name": "SecurityCtrlr"}, "variable": {"name": name},
               "variableAttribute": [{"value": value}]}
              for name, value in (("BasicAuthPassword", "old-password-in-clear"),
                                  ("SecurityProfile", "1"))]
    repo = await open_repository(db)
    try:
        async def stored_as_before(tx: Tx) -> None:
            await tx.upsert_device_variables("CP1", rows_from_report(report), T0)
            # as the model stored it before (rows_from_report keeps no credential now)
            await tx.set_device_value("CP1", "SecurityCtrlr.BasicAuthPassword",
                                      "old-password-in-clear", T0)
            await tx.execute("DELETE FROM schema_migrations WHERE version = 359")

        await repo.unit(stored_as_before)
    finally:
        await repo.close()
    repo = await open_repository(db)  # migrates again
    try:
        rows = {r["var_key"]: r["value"]
                for r in await repo.read(lambda tx: tx.device_variables("CP1"))}
    finally:
        await repo.close()
    assert rows == {"SecurityCtrlr.BasicAuthPassword": None, "SecurityCtrlr.SecurityProfile": "1"}
