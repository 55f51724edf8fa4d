"""Reservations, firmware images and file transfers in portable SQL.

A mixin of :class:`csms.storage.sql.SqlTx`: the use cases reach these tables only through
these named methods of the storage port (``csms.service.ports.Tx``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import UTC, datetime
from typing import Any

from csms.domain.maintenance import (
    FirmwareImage,
    Reservation,
    ReservationState,
    Transfer,
    TransferKind,
)

__all__ = ["MaintenanceSql"]


def _iso(at: datetime | None) -> str | None:
    if at is None:
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _reservation(row: dict[str, Any]) -> Reservation:
    return Reservation(
        station_id=row["station_id"], connector_id=int(row["connector_id"]),
        id_tag=row["id_tag"], parent_tag=row["parent_tag"],
        expires_at=datetime.fromisoformat(row["expires_at"]),
        created_at=datetime.fromisoformat(row["created_at"]),
        status=ReservationState(row["status"]), answer=row["answer"],
        session_id=row["session_id"], updated_at=_time(row["updated_at"]), id=int(row["id"]))


def _firmware(row: dict[str, Any]) -> FirmwareImage:
    return FirmwareImage(
        version=row["version"], file_name=row["file_name"], size=int(row["size"]),
        sha256=row["sha256"], created_at=datetime.fromisoformat(row["created_at"]),
        signature=row["signature"], signing_cert=row["signing_cert"], id=int(row["id"]),
        md5=row.get("md5"))


def _transfer(row: dict[str, Any]) -> Transfer:
    return Transfer(
        kind=TransferKind(row["kind"]), station_id=row["station_id"],
        token_hash=row["token_hash"], expires_at=datetime.fromisoformat(row["expires_at"]),
        created_at=datetime.fromisoformat(row["created_at"]), status=row["status"],
        firmware_id=row["firmware_id"], log_type=row["log_type"], file_name=row["file_name"],
        size=row["size"], uploaded_at=_time(row["uploaded_at"]),
        updated_at=_time(row["updated_at"]), detail=row["detail"], id=int(row["id"]),
        locations=row.get("locations"), queued_args=row.get("queued_args"))


class MaintenanceSql(ABC):
    @abstractmethod
    async def execute(self, sql: str, *params: Any) -> int: ...

    @abstractmethod
    async def fetchone(self, sql: str, *params: Any) -> dict[str, Any] | None: ...

    @abstractmethod
    async def fetchall(self, sql: str, *params: Any) -> list[dict[str, Any]]: ...

    @abstractmethod
    async def insert_id(self, sql: str, *params: Any) -> int: ...

    # -- reservations ----------------------------------------------------------------------
    async def insert_reservation(self, r: Reservation) -> int:
        r.id = await self.insert_id(
            "INSERT INTO reservations (station_id, connector_id, id_tag, parent_tag,"
            " expires_at, status, answer, session_id, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            r.station_id, r.connector_id, r.id_tag, r.parent_tag, _iso(r.expires_at),
            r.status.value, r.answer, r.session_id, _iso(r.created_at),
            _iso(r.updated_at or r.created_at))
        return r.id

    async def get_reservation(self, reservation_id: int) -> Reservation | None:
        row = await self.fetchone("SELECT * FROM reservations WHERE id = ?", reservation_id)
        return None if row is None else _reservation(row)

    async def update_reservation(self, r: Reservation) -> None:
        await self.execute(
            "UPDATE reservations SET status = ?, answer = ?, session_id = ?, updated_at = ?"
            " WHERE id = ?",
            r.status.value, r.answer, r.session_id, _iso(r.updated_at or r.created_at), r.id)

    async def list_reservations(self, station_id: str | None = None,
                                limit: int = 1000) -> list[Reservation]:
        if station_id is None:
            rows = await self.fetchall(
                "SELECT * FROM reservations ORDER BY id DESC LIMIT ?", limit)
        else:
            rows = await self.fetchall(
                "SELECT * FROM reservations WHERE station_id = ? ORDER BY id DESC LIMIT ?",
                station_id, limit)
        return [_reservation(r) for r in rows]

    async def accepted_reservations(self, station_id: str) -> list[Reservation]:
        rows = await self.fetchall(
            "SELECT * FROM reservations WHERE station_id = ? AND status = ? ORDER BY id",
            station_id, ReservationState.ACCEPTED.value)
        return [_reservation(r) for r in rows]

    # -- firmware images -------------------------------------------------------------------
    async def add_firmware(self, image: FirmwareImage) -> int:
        image.id = await self.insert_id(
            "INSERT INTO firmware_images (version, file_name, size, sha256, signature,"
            " signing_cert, created_at, md5) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            image.version, image.file_name, image.size, image.sha256, image.signature,
            image.signing_cert, _iso(image.created_at), image.md5)
        return image.id

    async def get_firmware(self, version: str) -> FirmwareImage | None:
        row = await self.fetchone("SELECT * FROM firmware_images WHERE version = ?", version)
        return None if row is None else _firmware(row)

    async def firmware_by_id(self, firmware_id: int) -> FirmwareImage | None:
        row = await self.fetchone("SELECT * FROM firmware_images WHERE id = ?", firmware_id)
        return None if row is None else _firmware(row)

    async def list_firmware(self) -> list[FirmwareImage]:
        return [_firmware(r) for r in await self.fetchall(
            "SELECT * FROM firmware_images ORDER BY id")]

    async def set_firmware_md5(self, firmware_id: int, md5: str) -> None:
        await self.execute("UPDATE firmware_images SET md5 = ? WHERE id = ?", md5,
                           firmware_id)

    # -- transfers ---------------------------------------------------------------------------
    async def insert_transfer(self, t: Transfer) -> int:
        t.id = await self.insert_id(
            "INSERT INTO transfers (kind, station_id, token_hash, status, firmware_id,"
            " log_type, file_name, size, uploaded_at, detail, expires_at, created_at,"
            " updated_at, locations, queued_args)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            t.kind.value, t.station_id, t.token_hash, t.status, t.firmware_id, t.log_type,
            t.file_name, t.size, _iso(t.uploaded_at), t.detail, _iso(t.expires_at),
            _iso(t.created_at), _iso(t.updated_at or t.created_at), t.locations,
            t.queued_args)
        return t.id

    async def get_transfer(self, transfer_id: int) -> Transfer | None:
        row = await self.fetchone("SELECT * FROM transfers WHERE id = ?", transfer_id)
        return None if row is None else _transfer(row)

    async def transfer_by_token(self, token_hash: str) -> Transfer | None:
        row = await self.fetchone("SELECT * FROM transfers WHERE token_hash = ?", token_hash)
        return None if row is None else _transfer(row)

    async def update_transfer_status(self, transfer_id: int, status: str,
                                     at: datetime) -> None:
        await self.execute("UPDATE transfers SET status = ?, updated_at = ? WHERE id = ?",
                           status, _iso(at), transfer_id)

    async def set_transfer_locations(self, transfer_id: int, locations: str,
                                     at: datetime) -> None:
        await self.execute("UPDATE transfers SET locations = ?, updated_at = ? WHERE id = ?",
                           locations, _iso(at), transfer_id)

    async def move_transfer(self, transfer_id: int, before: str, after: str,
                            at: datetime) -> bool:
        """Change a transfer's status from ``before`` to ``after`` only if it is still
        ``before`` (one writer wins, whichever node it runs on): True when this one did."""
        changed = await self.execute(
            "UPDATE transfers SET status = ?, updated_at = ? WHERE id = ? AND status = ?",
            after, _iso(at), transfer_id, before)
        return changed == 1

    async def reissue_transfer(self, transfer_id: int, token_hash: str,
                               expires_at: datetime, at: datetime) -> None:
        """A queued request about to be sent: its URL's token (and lifetime) are made now."""
        await self.execute(
            "UPDATE transfers SET token_hash = ?, expires_at = ?, updated_at = ? WHERE id = ?",
            token_hash, _iso(expires_at), _iso(at), transfer_id)

    async def queued_transfers(self, station_id: str | None = None,
                               limit: int = 100) -> list[Transfer]:
        """Requests waiting for their station (all stations: None), oldest first."""
        if station_id is None:
            rows = await self.fetchall(
                "SELECT * FROM transfers WHERE status = 'queued' ORDER BY id LIMIT ?", limit)
        else:
            rows = await self.fetchall(
                "SELECT * FROM transfers WHERE status = 'queued' AND station_id = ?"
                " ORDER BY id LIMIT ?", station_id, limit)
        return [_transfer(r) for r in rows]

    async def finish_upload(self, transfer_id: int, file_name: str, size: int,
                            at: datetime) -> bool:
        """Record a transfer's upload once: False when one was recorded already."""
        changed = await self.execute(
            "UPDATE transfers SET file_name = ?, size = ?, uploaded_at = ?, updated_at = ?"
            " WHERE id = ? AND uploaded_at IS NULL",
            file_name, size, _iso(at), _iso(at), transfer_id)
        return changed == 1

    async def list_transfers(self, kind: TransferKind, station_id: str | None = None,
                             limit: int = 1000) -> list[Transfer]:
        if station_id is None:
            rows = await self.fetchall(
                "SELECT * FROM transfers WHERE kind = ? ORDER BY id DESC LIMIT ?",
                kind.value, limit)
        else:
            rows = await self.fetchall(
                "SELECT * FROM transfers WHERE kind = ? AND station_id = ?"
                " ORDER BY id DESC LIMIT ?", kind.value, station_id, limit)
        return [_transfer(r) for r in rows]

    async def latest_transfer(self, station_id: str, kind: TransferKind,
                              log_type: str | None = None) -> Transfer | None:
        # the latest the station received: not one still queued, cancelled or expired
        sent = " AND status NOT IN ('queued', 'cancelled', 'expired', 'Invalid')"
        if log_type is None:
            row = await self.fetchone(
                "SELECT * FROM transfers WHERE station_id = ? AND kind = ?" + sent +
                " ORDER BY id DESC LIMIT 1", station_id, kind.value)
        else:
            row = await self.fetchone(
                "SELECT * FROM transfers WHERE station_id = ? AND kind = ? AND log_type = ?"
                + sent + " ORDER BY id DESC LIMIT 1", station_id, kind.value, log_type)
        return None if row is None else _transfer(row)
