"""A station id or a node id as one level of an MQTT topic: valid, and never another's.

OCPP lets a station id hold characters MQTT gives a meaning in a topic (``+`` and ``#``
are wildcards a client may not publish to, ``/`` separates levels), and a station that
auto-registers picks its own id. :func:`topic_level` writes any text as one level that is
a valid part of a topic a client publishes to, and from which the text can be read back:

- printable ASCII (U+0020 to U+007E) stays as it is, except ``%``, ``+``, ``#`` and
  ``/``;
- those four and every other character (control characters, NUL, non-ASCII) are
  percent-encoded: each byte of their UTF-8 form as ``%XX``, ``XX`` upper-case hex;
- a level that would be longer than :data:`MAX_LEVEL_BYTES` is ``%~`` followed by the
  SHA-256 (hex) of the text's UTF-8 form instead (an MQTT topic holds at most 65,535
  bytes; station ids are at most 48 characters, 576 bytes encoded, so none is that long).

Every ``%`` of a level starts an escape, so reading it back is plain percent-decoding
(``urllib.parse.unquote``): two different texts never give one level, and no text gives
a level that another text's level could be confused with. :func:`station_level` also
writes a station called ``nodes`` or ``settlement`` with its first letter escaped
(``%6Eodes``, ``%73ettlement``): ``voltledger/nodes/...`` is the command bus's
(csms.bus.commands), ``voltledger/settlement/<state>`` the settlement worker's.
"""

from __future__ import annotations

import hashlib
from urllib.parse import unquote

__all__ = ["MAX_LEVEL_BYTES", "NODES_LEVEL", "RESERVED_LEVELS", "level_text", "station_level",
           "topic_level"]

MAX_LEVEL_BYTES = 1024
NODES_LEVEL = "nodes"  # voltledger/nodes/<node>/...: the command bus between nodes
# the levels after voltledger/ that are no station's
RESERVED_LEVELS = frozenset({NODES_LEVEL, "settlement"})
_KEPT = frozenset(chr(c) for c in range(0x20, 0x7F)) - set("%+#/")
_HASHED = "%~"


def topic_level(text: str) -> str:
    """``text`` as one topic level (see the module's documentation)."""
    out: list[str] = []
    for char in text:
        if char in _KEPT:
            out.append(char)
        else:  # a lone surrogate (no UTF-8 form) is written as its 3 bytes all the same
            out.extend(f"%{b:02X}" for b in char.encode("utf-8", "surrogatepass"))
    level = "".join(out)
    if len(level) > MAX_LEVEL_BYTES:  # ASCII only: one byte a character
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        return _HASHED + digest
    return level


def station_level(station_id: str) -> str:
    """The level of a station's events, ``voltledger/<level>/<event>``."""
    level = topic_level(station_id)
    if level in RESERVED_LEVELS:
        return f"%{ord(level[0]):02X}{level[1:]}"
    return level


def level_text(level: str) -> str | None:
    """The text :func:`topic_level` (or :func:`station_level`) wrote as ``level``; None
    for the digest of an over-long one."""
    if level.startswith(_HASHED):
        return None
    return unquote(level, errors="surrogatepass")
