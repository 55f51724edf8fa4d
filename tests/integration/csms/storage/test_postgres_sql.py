"""The PostgreSQL adapter's pure helpers (no server needed)."""

from __future__ import annotations

import re

import pytest

from csms.service.ports import StorageError
from csms.storage.postgres import PostgresRepository, describe_dsn, to_postgres_placeholders


@pytest.mark.parametrize(("sql", "expected"), [
    ("SELECT 1", "SELECT 1"),
    ("SELECT * FROM t WHERE a = ? AND b = ?", "SELECT * FROM t WHERE a = $1 AND b = $2"),
    ("INSERT INTO t VALUES (?, '?', ?)", "INSERT INTO t VALUES ($1, '?', $2)"),
    ("SELECT \"we?ird\" FROM t WHERE x = ?", "SELECT \"we?ird\" FROM t WHERE x = $1"),
    ("SELECT 'it''s ?' , ?", "SELECT 'it''s ?' , $1"),
    ("SELECT ? -- really?\n, ?", "SELECT $1 -- really?\n, $2"),
    ("UPDATE t SET a = ? WHERE id IN (?, ?, ?)", "UPDATE t SET a = $1 WHERE id IN ($2, $3, $4)"),
])
def test_placeholders(sql: str, expected: str) -> None:
    assert to_postgres_placeholders(sql) == expected


def test_describe_dsn_hides_the_password() -> None:
    assert describe_dsn("postgresql://csms:s3cret@db.example:6432/csms?sslmode=require") == (
        "postgresql://csms@db.example:6432/csms")
    assert "s3cret" not in describe_dsn("postgres://u:s3cret@[::1/x")


async def test_unreachable_server_is_a_clear_error() -> None:
    with pytest.raises(StorageError, match=re.escape("cannot connect to postgresql://u@127.0.0.1:1/x")):
        await PostgresRepository.open("postgresql://u:pw@127.0.0.1:1/x")
