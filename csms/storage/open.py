"""Open the repository named by a ``--db`` value: a SQLite path or a PostgreSQL URL."""

from __future__ import annotations

from pathlib import Path

from csms.service.ports import Repository, StorageError
from csms.storage.sqlite import SqliteRepository

__all__ = ["open_repository"]


def _check_sqlite_path(db: str) -> None:
    if db != ":memory:":
        parent = Path(db).expanduser().resolve().parent
        if not parent.is_dir():
            raise ValueError(f"database folder {parent} does not exist")


async def open_repository(db: str, processes: int = 1) -> Repository:
    """``processes``: the server processes of this machine on ``db`` (``csms serve
    --workers``), which share the batches PostgreSQL runs at once."""
    if db.startswith(("postgresql://", "postgres://")):
        # Imported here: asyncpg is loaded only by the nodes that use it.
        from csms.storage.postgres import PostgresRepository

        try:
            return await PostgresRepository.open(db, processes=processes)
        except StorageError as exc:  # server down, no such database: a usage error
            raise ValueError(str(exc)) from exc
    _check_sqlite_path(db)
    return SqliteRepository(db)
