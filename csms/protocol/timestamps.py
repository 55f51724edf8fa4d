"""The one timestamp policy for OCPP dateTime values of both versions (pure).

OCPP 1.6 §3.1.4 and 2.0.1 §2.13 ask for RFC 3339 times ("2025-08-21T07:03:33.373Z").
Real stations send variants; this module accepts what is unambiguous, says what it
assumed, and refuses what cannot be read:

=============================================  ======================================
``2025-08-21T07:03:33Z`` / ``+02:00``           RFC 3339: accepted
``2025-08-21T07:03:33.373+0000`` (KEBA)         offset without colon: accepted
``2025-08-21 07:03:33Z``                        space for ``T`` (RFC 3339 §5.6 note): accepted
``.1`` ... ``.123456789``, ``,5``               fractions of any length: accepted, kept to
                                                the microsecond
``2025-08-21T07:03:33`` (Growatt)               no offset: read as UTC, ``offset_assumed``
anything else (basic format, no seconds,        refused (:class:`TimestampError`)
impossible dates, a time outside years 1-9999
once moved to UTC)
=============================================  ======================================

Python's ``datetime.fromisoformat`` alone is not the policy: since 3.11 it also reads
ISO 8601 forms no OCPP station should send (``20250821T070333Z``, missing seconds).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

__all__ = ["ParsedTime", "TimestampError", "is_readable", "parse_timestamp"]

# re.ASCII: RFC 3339's digits are 0-9 (RFC 5234 B.1); \d would take every script's
# digits ("٢٠٢٦"), which int() reads
_PATTERN = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,32}))?"
    r"(?:([Zz])|([+-])(\d{2}):?(\d{2}))?", re.ASCII
)


class TimestampError(ValueError):
    """A dateTime that cannot be read under the policy (the message says why)."""


@dataclass(frozen=True, slots=True)
class ParsedTime:
    value: datetime  # aware, UTC
    offset_assumed: bool  # the text had no offset; it was read as UTC


# The texts read last and what they gave: a message's times are read twice, by the
# schema's format check and by the translation (bounded: emptied when full).
_RECENT: dict[str, ParsedTime] = {}
_RECENT_MAX = 64
_RECENT_TEXT = 64  # characters: the longest time the pattern reads is 58


def parse_timestamp(text: object) -> ParsedTime:
    """Read one OCPP dateTime under the policy of this module."""
    if not isinstance(text, str):
        raise TimestampError("a dateTime is a string")
    known = _RECENT.get(text)
    if known is not None:
        return known
    parsed = _parse(text)
    if len(text) <= _RECENT_TEXT:  # not a valid time padded with megabytes of spaces
        if len(_RECENT) >= _RECENT_MAX:
            _RECENT.clear()
        _RECENT[text] = parsed
    return parsed


def _parse(text: str) -> ParsedTime:
    m = _PATTERN.fullmatch(text.strip())
    if m is None:
        raise TimestampError(f"invalid dateTime {text[:64]!r}: use RFC 3339")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    micro = int((m.group(7) or "0")[:6].ljust(6, "0"))
    assumed = m.group(8) is None and m.group(9) is None
    tz = UTC
    if m.group(9) is not None:
        hours, minutes = int(m.group(10)), int(m.group(11))
        if hours > 23 or minutes > 59:
            raise TimestampError(f"invalid offset in {text[:64]!r}")
        delta = timedelta(hours=hours, minutes=minutes)
        tz = timezone(-delta if m.group(9) == "-" else delta)
    if second == 60:  # a leap second (RFC 3339 §5.7): the instant after :59
        second, micro = 59, 999_999
    try:
        local = datetime(year, month, day, hour, minute, second, micro, tzinfo=tz)
        value = local.astimezone(UTC)
    except (ValueError, OverflowError):
        raise TimestampError(f"dateTime {text[:64]!r} is not a time between the years"
                             " 1 and 9999") from None
    return ParsedTime(value, assumed)


def is_readable(text: object) -> bool:
    """For schema validation: whether :func:`parse_timestamp` reads ``text``."""
    try:
        parse_timestamp(text)
    except TimestampError:
        return False
    return True
