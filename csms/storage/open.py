"""Open the repository named by a ``--db`` value: a SQLite path or a PostgreSQL URL."""

from __future__ import annotations

from pathlib import Path

from csms.service.ports import Repository
from csms.storage.sqlite import SqliteRepository

__all__ = ["open_repository"]


def _check_sqlite_path(db: str) -> None:
    if db != ":memory:":
        parent = Path(db).expanduser().resolve().parent
        if not parent.is_dir():
            raise ValueError(f"database folder {parent} does not exist")


async def open_repository(db: str) -> Repository:
    if db.startswith(("postgresql://", "postgres://")):
        raise ValueError("PostgreSQL storage is not available in this build yet")
    _check_sqlite_path(db)
    return SqliteRepository(db)
