"""Held-back PostgreSQL writes: values written into statements as literals (pure)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from csms.storage.postgres import inline_statement, to_postgres_placeholders


@pytest.mark.parametrize(("value", "literal"), [
    (None, "NULL"),
    (0, "0"),
    (-42, "-42"),
    (2**70, str(2**70)),  # out of BIGINT range: PostgreSQL refuses it, as with parameters
    (True, "1"),
    (False, "0"),
    (Decimal("4200000.5"), "'4200000.5'"),
    ("plain", "'plain'"),
    ("it's", "'it''s'"),
    ("x'); DROP TABLE sessions; --", "'x''); DROP TABLE sessions; --'"),
    ("back\\slash\\'", "'back\\slash\\'''"),  # no escapes with standard_conforming_strings
    ("$1 ? $$ E'x' ;", "'$1 ? $$ E''x'' ;'"),
    ("Zähler ⚡ \n\t", "'Zähler ⚡ \n\t'"),
])
def test_a_value_becomes_one_literal(value: Any, literal: str) -> None:
    assert inline_statement("UPDATE t SET a = ? WHERE id = 1", (value,)) == \
        f"UPDATE t SET a = {literal} WHERE id = 1"


@pytest.mark.parametrize("value", ["nul\x00byte", 1.5, b"bytes", object(), [1]])
def test_what_is_not_written_as_a_literal_goes_with_parameters(value: Any) -> None:
    # NUL: PostgreSQL text cannot hold it, the parameter path reports the error;
    # other types are not used by held writes and keep their typed parameters
    assert inline_statement("UPDATE t SET a = ?", (value,)) is None


def test_placeholders_inside_quotes_and_comments_are_text() -> None:
    sql = "UPDATE t SET a = ?, b = '?' -- what?\n WHERE c = \"?\" AND d = ?"
    assert to_postgres_placeholders(sql) == \
        "UPDATE t SET a = $1, b = '?' -- what?\n WHERE c = \"?\" AND d = $2"
    assert inline_statement(sql, ("x", 2)) == \
        "UPDATE t SET a = 'x', b = '?' -- what?\n WHERE c = \"?\" AND d = 2"


def test_a_wrong_number_of_values_is_not_inlined() -> None:
    assert inline_statement("UPDATE t SET a = ?, b = ?", ("x",)) is None
    assert inline_statement("UPDATE t SET a = ?", ("x", "y")) is None
