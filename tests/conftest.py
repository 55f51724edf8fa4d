"""Shared fixtures: a real central system on a loopback port with a real database.

``csms_server`` stores in a SQLite file; the modules named in ``BOTH_BACKENDS``
run every test twice, once on SQLite and once on a fresh PostgreSQL schema. The
modules named in ``BOTH_LOOPS`` run every test on asyncio's standard loop and on
uvloop (``csms serve`` takes uvloop where it is installed: the connection guards must
hold on both).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path

import pytest

from csms.config import Settings
from support import RunningServer, require_service

# The PostgreSQL test database (trust auth); each test gets its own schema in it.
POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
# server-level test modules that run on both storage backends
BOTH_BACKENDS = {"test_sessions_v16.py", "test_sessions_v201.py", "test_console.py",
                 "test_sessions_bound.py",
                 "test_transaction_ids_v16.py",
                 "test_configuration16.py", "test_pnc16.py"}


# modules whose tests run on both event loops
BOTH_LOOPS = {"test_transport.py", "test_security.py", "test_server.py", "test_files.py"}


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item,
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]] | None:
    # a hook that answers must answer for every test: the others get asyncio's loop
    if item.path.name not in BOTH_LOOPS:
        return {"asyncio": asyncio.new_event_loop}
    import uvloop

    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "csms_db" in metafunc.fixturenames and metafunc.definition.path.name in BOTH_BACKENDS:
        metafunc.parametrize("csms_db", BACKENDS, indirect=True)


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """A URL whose ``search_path`` is a new, empty schema; dropped after the test.

    A schema rather than a database per test: ``CREATE SCHEMA`` is cheap, tests
    running at once never see each other's tables, and the URL (with the schema
    as a ``search_path`` server setting) goes unchanged to ``--db``.
    """
    require_service("PostgreSQL", "127.0.0.1", 5432)
    import asyncpg

    schema = f"vl_test_{secrets.token_hex(6)}"
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
    finally:
        await conn.close()
    try:
        yield f"{POSTGRES_URL}?search_path={schema}"
    finally:
        conn = await asyncpg.connect(POSTGRES_URL)
        try:
            await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        finally:
            await conn.close()


@pytest.fixture
def csms_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The ``--db`` of ``csms_server``: a SQLite file unless parametrized "postgres"."""
    if getattr(request, "param", "sqlite") == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    return str(tmp_path / "csms.sqlite3")


@pytest.fixture
async def csms_server(tmp_path: Path, csms_db: str) -> AsyncIterator[RunningServer]:
    # Tests script each frame a raw station sees: the GetConfiguration a 1.6 boot brings
    # by default is turned on only by the tests of it (tests/integration/csms/
    # test_configuration16.py).
    settings = Settings(
        db=csms_db, host="127.0.0.1", port=0,
        data_dir=str(tmp_path / "data"), heartbeat_interval=60, call_timeout=5, admin_port=0,
        boot_get_configuration=False,
    )
    server = RunningServer(settings)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
