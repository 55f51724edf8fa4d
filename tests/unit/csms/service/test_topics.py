"""A station id or a node id as one MQTT topic level: valid whatever the id, read back
exactly, and never the level of another id (a stranger picks its id with auto_register)."""

from __future__ import annotations

from urllib.parse import unquote

from hypothesis import given
from hypothesis import strategies as st

from csms.service.topics import (
    MAX_LEVEL_BYTES,
    RESERVED_LEVELS,
    level_text,
    station_level,
    topic_level,
)

# any code point, lone surrogates included (a str may hold them)
ANY_TEXT = st.text(alphabet=st.characters(exclude_categories=()), max_size=60)

ODD = ["CP+1", "CP#1", "X#", "+", "#", "a/b", "/", "//", "", "%", "%25", "CP%2B1", "CP%2b1",
       "x\x00y", "\x01", "\x7f", "\x85", "\ufffe", "\U0010ffff", "\ud800", "Zürich-1",
       "充电桩", "nodes", "%6Eodes", "settlement", "$SYS", " ", "a b"]


def valid_level(level: str) -> bool:
    """What MQTT (and Mosquitto) take in a topic a client publishes to, for one level."""
    return (level.isascii() and all(0x20 <= ord(c) < 0x7F for c in level)
            and not set(level) & set("+#/") and len(level) <= MAX_LEVEL_BYTES)


def test_odd_ids_make_valid_levels_read_back_exactly() -> None:
    for name in ODD:
        level = station_level(name)
        assert valid_level(level), (name, level)
        assert level_text(level) == name, (name, level)
    assert station_level("CP+1") == "CP%2B1"
    assert station_level("CP%2B1") == "CP%252B1"  # the stranger's id is not CP+1's level
    assert station_level("nodes") == "%6Eodes" and station_level("%6Eodes") == "%256Eodes"
    # what a subscriber does with a level: plain percent-decoding
    assert unquote(station_level("Zürich/+#")) == "Zürich/+#"


def test_no_two_ids_share_a_level() -> None:
    names = ODD + [n.upper() for n in ODD] + [n + "/boot" for n in ODD]
    levels = {station_level(n): n for n in names}
    assert len(levels) == len(set(names))
    assert not RESERVED_LEVELS & set(levels)  # the bus's and settlement's own levels


@given(ANY_TEXT, ANY_TEXT)
def test_any_text_is_a_valid_level_unlike_any_other(a: str, b: str) -> None:
    for name in (a, b):
        assert valid_level(topic_level(name)) and valid_level(station_level(name))
        assert level_text(topic_level(name)) == name
        assert level_text(station_level(name)) == name
    assert (station_level(a) == station_level(b)) == (a == b)
    assert (topic_level(a) == topic_level(b)) == (a == b)


def test_an_over_long_id_has_a_digest_no_short_id_can_have() -> None:
    long_a, long_b = "\U0001f50c" * 20_000, "\U0001f50c" * 19_999 + "x"
    level_a, level_b = station_level(long_a), station_level(long_b)
    assert valid_level(level_a) and valid_level(level_b) and level_a != level_b
    assert len(f"voltledger/{level_a}/session/completed".encode()) <= 65_535
    assert level_text(level_a) is None
    # every '%' of an ordinary level starts an escape: none starts with "%~"
    assert station_level(level_a) != level_a
    assert station_level("%~" + level_a[2:]).startswith("%25~")
