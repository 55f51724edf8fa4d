"""The storage suite runs on both backends: ``repo`` is a SQLite file or a PostgreSQL schema.

PostgreSQL tests get a new schema on the ``test`` database (the root
``postgres_url`` fixture); they skip when the server is down on a developer
machine and fail under ``CI=true``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from csms.service.ports import Repository
from csms.storage import open_repository


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres),
                        pytest.param("postgres-in-sequence", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A ``--db`` value for a fresh, empty database of each backend (PostgreSQL twice: its
    batches in rounds, and unit by unit as when a batch falls back)."""
    if request.param.startswith("postgres"):
        return str(request.getfixturevalue("postgres_url"))
    return str(tmp_path / "csms.sqlite3")


@pytest.fixture
async def repo(db: str, request: pytest.FixtureRequest) -> AsyncIterator[Repository]:
    repository = await open_repository(db)
    if request.node.callspec.params.get("db") == "postgres-in-sequence":
        repository.in_rounds = False  # type: ignore[attr-defined]
    try:
        yield repository
    finally:
        await repository.close()


@pytest.fixture(params=["rounds", "in-sequence"])
async def two_nodes(request: pytest.FixtureRequest,
                    postgres_url: str) -> AsyncIterator[tuple[Repository, Repository]]:
    """Two repositories (two nodes' connection pools) on one PostgreSQL database, their
    batches in rounds, or unit by unit."""
    a = await open_repository(postgres_url)
    b = await open_repository(postgres_url)
    if request.param == "in-sequence":
        a.in_rounds = b.in_rounds = False  # type: ignore[attr-defined]
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()
