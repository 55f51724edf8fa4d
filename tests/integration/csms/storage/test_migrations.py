"""Migrations: idempotent, and the SQLite and PostgreSQL folders describe the same schema."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest

from csms.domain.model import IdTag
from csms.service.ports import Repository
from csms.storage import open_repository
from csms.storage.migrations import migrations_for

DIALECTS = ("sqlite", "postgres")
MIGRATIONS = Path(__file__).resolve().parents[4] / "csms" / "storage" / "migrations"

Schema = dict[str, Any]


# -- the files -------------------------------------------------------------------------
def test_both_dialects_have_the_same_migration_numbers_and_names() -> None:
    names = {d: sorted(p.name for p in (MIGRATIONS / d).glob("*.sql")) for d in DIALECTS}
    assert names["sqlite"], "no SQLite migrations found"
    assert names["postgres"] == names["sqlite"]
    assert [(m.version, m.name) for m in migrations_for("postgres")] == [
        (m.version, m.name) for m in migrations_for("sqlite")]


def _strip_comments(sql: str) -> str:
    return "\n".join(line.split("--", 1)[0] for line in sql.splitlines())


_CONSTRAINT_WORDS = {"PRIMARY", "UNIQUE", "FOREIGN", "CHECK", "CONSTRAINT"}


def declared_schema(dialect: str) -> dict[str, set[str]]:
    """Tables and their columns as the migration files declare them, in order."""
    tables: dict[str, set[str]] = {}
    for m in migrations_for(dialect):
        sql = _strip_comments(m.sql)
        for name, body in re.findall(r"CREATE TABLE\s+(\w+)\s*\((.*?)\)\s*(?:WITHOUT ROWID\s*)?;",
                                     sql, re.S | re.I):
            columns = set()
            depth = 0
            part = ""
            for ch in body + ",":
                depth += ch == "("
                depth -= ch == ")"
                if ch == "," and depth == 0:
                    first = part.split()[0] if part.split() else ""
                    if first and first.upper() not in _CONSTRAINT_WORDS:
                        columns.add(first.lower())
                    part = ""
                else:
                    part += ch
            tables[name.lower()] = columns
        for table, column in re.findall(
            r"ALTER TABLE\s+(\w+)\s+ADD COLUMN\s+(\w+)", sql, re.I
        ):
            tables[table.lower()].add(column.lower())
        for table, column in re.findall(
            r"ALTER TABLE\s+(\w+)\s+DROP COLUMN\s+(\w+)", sql, re.I
        ):
            tables[table.lower()].discard(column.lower())
        for table in re.findall(r"DROP TABLE\s+(?:IF EXISTS\s+)?(\w+)", sql, re.I):
            tables.pop(table.lower(), None)
        for old, new in re.findall(r"ALTER TABLE\s+(\w+)\s+RENAME TO\s+(\w+)", sql, re.I):
            tables[new.lower()] = tables.pop(old.lower())
    return tables


def declared_indexes(dialect: str) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for m in migrations_for(dialect):
        found.update(
            (name.lower(), table.lower()) for name, table in re.findall(
                r"CREATE\s+(?:UNIQUE\s+)?INDEX\s+(\w+)\s+ON\s+(\w+)", _strip_comments(m.sql),
                re.I,
            )
        )
    return found


def test_both_dialects_declare_the_same_tables_columns_and_indexes() -> None:
    sqlite, postgres = declared_schema("sqlite"), declared_schema("postgres")
    assert "sessions" in sqlite and "station_id" in sqlite["sessions"]
    assert postgres == sqlite
    assert declared_indexes("postgres") == declared_indexes("sqlite")


# -- the databases ---------------------------------------------------------------------
async def test_opening_twice_migrates_once_and_keeps_the_data(db: str) -> None:
    repo = await open_repository(db)
    try:
        await repo.unit(lambda tx: tx.put_tag(IdTag("T1")))
    finally:
        await repo.close()
    repo = await open_repository(db)
    try:
        rows = await repo.read(lambda tx: tx.fetchall(
            "SELECT version, name FROM schema_migrations ORDER BY version"))
        assert [(r["version"], r["name"]) for r in rows] == [
            (m.version, m.name) for m in migrations_for("sqlite")]
        assert [t.tag for t in await repo.read(lambda tx: tx.list_tags())] == ["T1"]
    finally:
        await repo.close()


async def _sqlite_schema(repo: Repository) -> Schema:
    async def work(tx: Any) -> Schema:
        tables = [r["name"] for r in await tx.fetchall(
            "SELECT name FROM sqlite_master WHERE type = 'table'"
            " AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        schema: Schema = {"columns": {}, "primary": {}, "unique": set(), "foreign": set(),
                          "indexes": set()}
        for t in tables:
            info = await tx.fetchall(f"SELECT * FROM pragma_table_info('{t}')")
            # SQLite lets a non-INTEGER primary key hold NULL; PostgreSQL does not:
            # compare "not null or part of the key".
            schema["columns"][t] = {r["name"]: bool(r["notnull"] or r["pk"]) for r in info}
            schema["primary"][t] = tuple(
                r["name"] for r in sorted(info, key=lambda r: r["pk"]) if r["pk"])
            for idx in await tx.fetchall(f"SELECT * FROM pragma_index_list('{t}')"):
                cols = tuple(r["name"] for r in await tx.fetchall(
                    f"SELECT name FROM pragma_index_info('{idx['name']}') ORDER BY seqno"))
                if idx["origin"] == "c":
                    schema["indexes"].add((idx["name"], t, cols, bool(idx["unique"])))
                elif idx["origin"] == "u":
                    schema["unique"].add((t, cols))
            for fk in await tx.fetchall(f"SELECT * FROM pragma_foreign_key_list('{t}')"):
                schema["foreign"].add((t, fk["from"], fk["table"], fk["to"]))
        return schema

    return await repo.read(work)


async def _postgres_schema(repo: Repository) -> Schema:
    async def work(tx: Any) -> Schema:
        schema: Schema = {"columns": {}, "primary": {}, "unique": set(), "foreign": set(),
                          "indexes": set()}
        for r in await tx.fetchall(
            "SELECT table_name, column_name, is_nullable FROM information_schema.columns"
            " WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"
        ):
            schema["columns"].setdefault(r["table_name"], {})[r["column_name"]] = (
                r["is_nullable"] == "NO")
        constraints = await tx.fetchall(
            "SELECT c.contype::text AS kind, t.relname::text AS tbl, f.relname::text AS ref,"
            " (SELECT array_agg(a.attname::text ORDER BY k.n) FROM unnest(c.conkey)"
            "  WITH ORDINALITY AS k(num, n) JOIN pg_attribute a ON a.attrelid = c.conrelid"
            "  AND a.attnum = k.num) AS cols,"
            " (SELECT array_agg(a.attname::text ORDER BY k.n) FROM unnest(c.confkey)"
            "  WITH ORDINALITY AS k(num, n) JOIN pg_attribute a ON a.attrelid = c.confrelid"
            "  AND a.attnum = k.num) AS refcols"
            " FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid"
            " LEFT JOIN pg_class f ON f.oid = c.confrelid"
            " WHERE t.relnamespace = current_schema()::regnamespace"
        )
        for c in constraints:
            if c["kind"] == "p":
                schema["primary"][c["tbl"]] = tuple(c["cols"])
            elif c["kind"] == "u":
                schema["unique"].add((c["tbl"], tuple(c["cols"])))
            elif c["kind"] == "f":
                [col], [ref_col] = c["cols"], c["refcols"]
                schema["foreign"].add((c["tbl"], col, c["ref"], ref_col))
        for t in schema["columns"]:
            schema["primary"].setdefault(t, ())
        for r in await tx.fetchall(
            "SELECT i.relname::text AS name, t.relname::text AS tbl, x.indisunique AS uniq,"
            " (SELECT array_agg(a.attname::text ORDER BY k.n) FROM unnest(x.indkey::int2[])"
            "  WITH ORDINALITY AS k(num, n) JOIN pg_attribute a ON a.attrelid = x.indrelid"
            "  AND a.attnum = k.num) AS cols"
            " FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid"
            " JOIN pg_class t ON t.oid = x.indrelid"
            " WHERE t.relnamespace = current_schema()::regnamespace"
            " AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)"
        ):
            schema["indexes"].add((r["name"], r["tbl"], tuple(r["cols"]), r["uniq"]))
        return schema

    return await repo.read(work)


@pytest.mark.postgres
async def test_both_databases_have_the_same_schema(tmp_path: Path, postgres_url: str) -> None:
    sqlite = await open_repository(str(tmp_path / "csms.sqlite3"))
    postgres = await open_repository(postgres_url)
    try:
        lite, pg = await _sqlite_schema(sqlite), await _postgres_schema(postgres)
    finally:
        await sqlite.close()
        await postgres.close()
    assert "sessions" in lite["columns"] and "stations" in lite["columns"]
    assert set(pg["columns"]) == set(lite["columns"])
    for table, columns in lite["columns"].items():
        assert pg["columns"][table] == columns, table
    assert pg["primary"] == lite["primary"]
    assert pg["unique"] == lite["unique"]
    assert pg["foreign"] == lite["foreign"]
    assert pg["indexes"] == lite["indexes"]


def _session_row(tx: str) -> str:
    return ("INSERT INTO sessions (station_id, evse_id, ocpp_version, transaction_id,"
            " started_at, status, created_at, updated_at) VALUES ('CP1', 1, '1.6',"
            f" '{tx}', '2026-03-01T10:00:00+00:00', 'active', '2026-03-01T10:00:00+00:00',"
            " '2026-03-01T10:00:00+00:00')")


@pytest.mark.postgres
async def test_an_index_added_to_a_table_with_rows_lets_its_writes_go_on(
    postgres_url: str,
) -> None:
    """An upgrade adds an index to a table that holds rows (migration 0210: sessions by
    EVSE) while other nodes of the cluster write to it. Built as a plain CREATE INDEX it
    queues for a lock that stops every write to the table until the index is built (a
    million sessions: seconds of every station's starts and stops waiting); built
    CONCURRENTLY the writes go on. Here one node's transaction is open on the table, so
    the build waits for it, and a second node's insert must still go through; then the
    index is there, valid, and the migration recorded."""
    import asyncpg

    from csms.storage.migrations import migrate
    from csms.storage.postgres import _PostgresMigrations

    repo = await open_repository(postgres_url)
    await repo.close()
    name = f"vl_migrating_{id(repo)}"
    dsn, _, schema = postgres_url.partition("?search_path=")
    settings = {"search_path": schema}
    writer = await asyncpg.connect(dsn, server_settings=settings)
    other = await asyncpg.connect(dsn, server_settings=settings)
    migrating = await asyncpg.connect(dsn, server_settings={**settings,
                                                            "application_name": name})
    upgrade: asyncio.Task[None] | None = None
    try:
        await writer.execute(_session_row("1"))
        await writer.execute("DROP INDEX sessions_evse")  # as before the upgrade
        await writer.execute("DELETE FROM schema_migrations WHERE version = 210")
        open_tx = writer.transaction()
        await open_tx.start()
        await writer.execute(_session_row("2"))
        upgrade = asyncio.create_task(migrate("postgres", _PostgresMigrations(migrating)))
        for _ in range(200):  # until the build waits for the open transaction
            if await other.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1"
                    " AND wait_event_type = 'Lock'", name):
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("the migration never waited for the open transaction")
        await other.execute("SET lock_timeout = '3s'")
        await other.execute(_session_row("3"))  # a write goes on during the build
        assert not upgrade.done()
        await open_tx.commit()
        await asyncio.wait_for(upgrade, 30)
        assert await other.fetchval(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relname = 'sessions_evse' AND n.nspname = $1", schema) is True
        assert await other.fetchval(
            "SELECT count(*) FROM schema_migrations WHERE version = 210") == 1
        assert await other.fetchval("SELECT count(*) FROM sessions") == 3
    finally:
        if upgrade is not None and not upgrade.done():
            upgrade.cancel()
            await asyncio.gather(upgrade, return_exceptions=True)
        for conn in (writer, other, migrating):
            await conn.close()


def test_only_migrations_of_indexes_alone_are_built_concurrently() -> None:
    """Which PostgreSQL migrations add indexes alone (built CONCURRENTLY on a table with
    rows): the console's, sessions by transaction and by EVSE; a migration with any other
    statement runs in one transaction, as every migration on an empty table does."""
    from csms.storage.postgres import index_builds

    alone = {m.version: index_builds(m.sql) for m in migrations_for("postgres")}
    assert {v for v, builds in alone.items() if builds} >= {30, 80, 210}
    assert alone[1] is None and alone[200] is None
    assert alone[210] == [("sessions_evse", "sessions", "CREATE INDEX CONCURRENTLY"
                           " sessions_evse ON sessions (station_id, evse_id, stopped_at)")]
    assert index_builds("CREATE UNIQUE INDEX a ON t (x) WHERE y IS NULL;\n-- b;\n") == [
        ("a", "t", "CREATE UNIQUE INDEX CONCURRENTLY a ON t (x) WHERE y IS NULL")]
    assert index_builds("CREATE INDEX a ON t (x); ALTER TABLE t ADD COLUMN z TEXT;") is None
