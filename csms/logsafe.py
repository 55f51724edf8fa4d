"""Keep credentials out of log lines, at every level; and what a station or a stranger
chose (an idTag, a vendor, a message id) from writing lines or terminal sequences of its
own (:func:`visible`).

The code never logs a credential on purpose (a CALL that carries one is logged
as ``<redacted>``, audit entries are redacted in :mod:`csms.translate.commands`);
this filter is the second line, for what libraries log at debug level (the
websockets handshake logs every request header, ``Authorization: Basic
<base64(id:password)>`` included) and for anything that slips through: HTTP
credentials, a password in a URL (the MQTT broker's, a database's), and the values
of OCPP configuration keys and variables named like a password (1.6
``AuthorizationKey``, 2.0.1 ``SecurityCtrlr.BasicAuthPassword``).

``csms serve`` puts :class:`SecretFilter` on its log handlers; the loggers the
server hands to libraries carry it themselves (:func:`protect`).

The filter runs on the event loop for every line, and a line may quote what a station
sent: it costs time in proportion to the line's length (no pattern backtracks) and a
line is cut to :data:`MAX_MESSAGE_CHARS` before it is redacted.

A log line, and a table or a line ``csms`` prints, shows the characters a terminal or a
log reader would obey rather than show as escapes (:func:`visible`): a station's idTag of
``"x\nERROR csms.admin: ..."`` wrote a line of its own making, a vendor of
``"\x1b]8;;http://..."`` a hyperlink into the operator's terminal.
"""

from __future__ import annotations

import logging
import re
import traceback
from types import TracebackType

__all__ = [
    "MAX_MESSAGE_CHARS", "REDACTED", "SECRET_HEADERS", "SecretFilter", "install", "protect",
    "redact", "traceback_text", "unshown_as_json", "visible",
]

REDACTED = "<redacted>"
# The longest log message written as it is; a longer one is cut (and says so) before it
# is redacted. A message may quote what a station sent (an error's description, a frame
# at debug level, up to the frame limit): no line costs more than this to redact, on the
# event loop every station shares, nor fills the log.
MAX_MESSAGE_CHARS = 8192
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})

# A quoted name that holds one of these words. Every pattern below is written so that
# no part of the text is read more than a bounded number of times, whatever it holds:
# a starting point is where nothing of its kind precedes it, repetitions are
# possessive (``*+``, ``++``: never given back), and a lazy gap may not run past the
# start of the next match's candidate. A line of "password" repeated 64 KB took the
# former patterns (``[^"']*password[^"']*``) seconds of the event loop.
_WORDS = r"(?:password|passphrase|secret|authorizationkey)"
_NAME = r"(?=[^\"']*?" + _WORDS + r")[^\"']*+"


def _gap(key: str) -> str:
    """Text inside one object, lazily, that does not run into the next ``key``: the
    match starting there is the one to make (and no text is read twice)."""
    return r"(?:[^{}\"']++|[\"'](?!" + key + r"[\"']\s*+:))*?"


_PATTERNS = [
    # HTTP credentials: "Basic dXNlcjpwYXNz...", "Bearer abc...", "Authorization: x"
    re.compile(r"(?i)(\b(?:basic|bearer|digest)\s++)[A-Za-z0-9+/=._~-]{12,}"),
    re.compile(r"(?i)(\bauthorization[\"']?\s*+[:=,]\s*+[\"']?(?:(?:basic|bearer|digest)\s++)?)"
               r"(?!<redacted>)[^\s\"',}]++"),
    # a URL's password: mqtt://user:password@broker, postgresql://user:password@host
    # (the scheme is read from the start of its run of scheme characters, once)
    re.compile(r"(?i)((?<![a-z0-9+.-])[a-z0-9+.-]++://[^\s/@:\"']*+:)(?!<redacted>)"
               r"[^\s/@\"']++(?=@)"),
    # 1.6 configuration: {"key": "AuthorizationKey", ..., "value": "..."} (JSON or repr)
    re.compile(r"(?i)([\"']key[\"']\s*+:\s*+[\"']" + _NAME + r"[\"']" + _gap("key")
               + r"[\"']value[\"']\s*+:\s*+[\"'])[^\"']*+"),
    # 2.0.1 variables: {"variable": {"name": "BasicAuthPassword"}, "attributeValue": "..."}
    re.compile(r"(?i)([\"']variable[\"']\s*+:\s*+\{\s*+[\"']name[\"']\s*+:\s*+[\"']" + _NAME
               + r"[\"'][^{}]*+\}" + _gap("variable")
               + r"[\"']attributeValue[\"']\s*+:\s*+[\"'])[^\"']*+"),
    # operator commands: {"password": "..."}, {"SecurityCtrlr.BasicAuthPassword": "..."}
    re.compile(r"(?i)([\"']" + _NAME + r"[\"']\s*+:\s*+[\"'])[^\"']*+"),
]


# What a terminal or a log reader obeys rather than shows: C0 and C1 control characters
# (ESC starts a terminal sequence, CR rewrites a line, LF starts one, 0x9b is a CSI by
# itself), DEL, the invisible format characters that reorder or hide text (bidi overrides
# and isolates, zero widths, the byte order mark) and lone surrogates (no encoding
# writes them: printed, they were an error).
_BEYOND_C0 = (r"\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064"
              r"\u2066-\u206f\ufeff\ufff9-\ufffb\ud800-\udfff")
_UNSHOWN = re.compile(r"[\x00-\x1f" + _BEYOND_C0 + "]")
# beyond the C0 controls: JSON text escapes those in its strings, and its indent's line
# breaks are its own
_UNSHOWN_IN_JSON = re.compile("[" + _BEYOND_C0 + "]")


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str) -> str:
    """``text`` with every character a terminal or a log reader would obey written as
    its escape (ESC as ``\\x1b``, a line break as ``\\x0a``, a right-to-left override as
    ``\\u202e``): one line, shown as it is."""
    return _UNSHOWN.sub(_escaped, text)


def _json_escaped(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def unshown_as_json(text: str) -> str:
    """JSON text with every character :func:`visible` escapes written as its JSON escape
    (``\\u202e``): beyond the C0 controls JSON escapes already, such characters stand
    only inside strings, which read back the same."""
    return _UNSHOWN_IN_JSON.sub(_json_escaped, text)


def _cut(message: str) -> str:
    """The message, or its first MAX_MESSAGE_CHARS characters and how many are left out."""
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    return (f"{message[:MAX_MESSAGE_CHARS]}... [{len(message) - MAX_MESSAGE_CHARS} more"
            " characters not logged]")


# The patterns above read a credential's value after its name only. A station writes the
# fields of its objects in any order (JSON objects have none): a 1.6 KeyValue's "value"
# before its "key", a 2.0.1 result's "attributeValue" before its "variable" or with the
# "component" between them, a report's values in the variable's list of attributes.
# Those are found by the objects they are in (:func:`_redact_objects`): a quoted string,
# either quote, its escapes read (possessive: each character is read once), or a
# character of structure. A string not closed runs to the end of the text: a quote is
# never read again from a later one (a text of escaped quotes took time in its square).
_TOKEN = re.compile(r"(?s)\"(?:[^\"\\]|\\.?)*+(?:\"|\Z)|'(?:[^'\\]|\\.?)*+(?:'|\Z)"
                    r"|[{}\[\]:,]")
# Objects and lists deeper than this are read as part of the one at this depth (an OCPP
# payload is a few levels deep; a text of brackets makes no container for each one).
_MAX_DEPTH = 16
_SECRET_WORD = re.compile(_WORDS, re.IGNORECASE)
_VALUE_WORD = re.compile(r"value[\"']", re.IGNORECASE)
# the fields whose string is a value, and those whose string names what it is
_VALUE_FIELDS = frozenset({"value", "attributevalue"})
_NAME_FIELDS = frozenset({"key", "name"})


class _Container:
    """An object or a list being read by :func:`_redact_objects`."""

    __slots__ = ("field", "is_object", "secret", "under", "values")

    def __init__(self, is_object: bool, under: str | None) -> None:
        self.is_object = is_object
        self.under = under  # the field of the object it is the value of
        self.field: str | None = None  # the field whose value comes next (an object's)
        self.secret = False  # a "key" or "name" that holds a credential
        self.values: list[tuple[int, int]] = []  # the value strings in it, at any depth


def _redact_objects(text: str) -> str:
    """``text`` with the value strings (``value``, ``attributeValue``) of every object
    named like a credential replaced, in whatever order its fields come: an object whose
    ``key`` or ``name`` holds a credential's word, or whose ``variable`` is such an object,
    has the values in it, at any depth, redacted. Linear in the text's length; a text cut
    in the middle of an object (a long message) is read up to its end."""
    if _SECRET_WORD.search(text) is None or _VALUE_WORD.search(text) is None:
        return text  # most lines: no token read (a cut line of tokens takes ~5 ms)
    stack: list[_Container] = []
    secret: list[tuple[int, int]] = []
    key_next = False  # the next string of the innermost object is a field's name
    beyond = 0  # the containers open beyond _MAX_DEPTH

    def close() -> None:
        done = stack.pop()
        parent = stack[-1] if stack else None
        if done.secret and (parent is None or done.under != "variable"):
            secret.extend(done.values)
            return
        if parent is None:
            return
        if done.secret:  # a 2.0.1 result or report entry of that variable
            parent.secret = True
        # the longer list takes the shorter one: nesting never copies a list again
        if len(parent.values) < len(done.values):
            parent.values, done.values = done.values, parent.values
        parent.values += done.values

    for match in _TOKEN.finditer(text):
        token = match.group()
        top = stack[-1] if stack else None
        if token in "{[":
            if len(stack) < _MAX_DEPTH:
                stack.append(_Container(token == "{", top.field if top is not None else None))
            else:
                beyond += 1
            key_next = token == "{"
        elif token in "}]":
            if beyond:
                beyond -= 1
            elif top is not None:
                close()
            key_next = False
        elif token == ",":
            key_next = top is not None and top.is_object
            if key_next and top is not None:
                top.field = None
        elif token == ":":
            key_next = False
        elif top is None or not top.is_object:
            continue
        elif key_next:
            top.field = token[1:-1].lower()  # (a string cut by the end: its last letter)
            key_next = False
        elif top.field in _VALUE_FIELDS:
            # a string cut by the end of the text has no closing quote
            closed = len(token) > 1 and token[-1] == token[0]
            top.values.append((match.start() + 1, match.end() - closed))
        elif top.field in _NAME_FIELDS and _SECRET_WORD.search(token):
            top.secret = True
    while stack:  # a message cut inside its objects
        close()
    if not secret:
        return text
    parts: list[str] = []
    at = 0
    for start, end in sorted(secret):
        if text[start:end] != REDACTED:
            parts += (text[at:start], REDACTED)
            at = end
    parts.append(text[at:])
    return "".join(parts)


def redact(text: str) -> str:
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
    return _redact_objects(text)


# the chunks of a formatted traceback that are ours (its head, the frames, the words between
# the exceptions of a chain) rather than an exception's own text
_OURS = ("Traceback (most recent call last):", "  ", "\n")


def traceback_text(exc_info: tuple[type[BaseException], BaseException,
                                   TracebackType | None]) -> str:
    """An exception's traceback as :class:`logging.Formatter` writes it, with the message
    of every exception of its chain made one line as a record's message is (cut, redacted,
    :func:`visible`): it may quote what a station sent (an idTag with a line break writes
    a line of its own) or a URL with its password. The frames keep their lines, each
    escaped; an exception group's messages are indented under its margin."""
    chunks = []
    for chunk in traceback.TracebackException(*exc_info).format():
        if chunk.startswith(_OURS):
            chunks.append("\n".join(visible(redact(line)) for line in chunk.split("\n")))
        else:  # "Type: message\n" (and its notes): one line each
            chunks.append(visible(redact(_cut(chunk.removesuffix("\n")))) + "\n")
    return "".join(chunks).removesuffix("\n")


class SecretFilter(logging.Filter):
    """Rewrites a record whose message holds a credential, a character :func:`visible`
    escapes or is longer than :data:`MAX_MESSAGE_CHARS`, and the text of the exception it
    carries (:func:`traceback_text`); never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        # websockets logs each header as ("< %s: %s", name, value)
        if (isinstance(args, tuple) and len(args) == 2 and isinstance(args[0], str)
                and args[0].lower() in SECRET_HEADERS):
            record.args = (args[0], REDACTED)
        try:
            message = record.getMessage()
        except Exception:  # a broken record is logging's to report, not ours
            return True
        safe = visible(redact(_cut(message)))
        if safe != message:
            record.msg, record.args = safe, None
        exc_info = record.exc_info
        if exc_info and exc_info[0] is not None and exc_info[1] is not None:
            # a Formatter writes exc_text where it is set, and sets it where it is not: a
            # handler without this filter may have written it raw before this one
            record.exc_text = traceback_text((exc_info[0], exc_info[1], exc_info[2]))
        return True


def protect(logger: logging.Logger) -> logging.Logger:
    """Put a :class:`SecretFilter` on a logger (once) and return it."""
    if not any(isinstance(f, SecretFilter) for f in logger.filters):
        logger.addFilter(SecretFilter())
    return logger


def install(root: logging.Logger | None = None) -> None:
    """Put a :class:`SecretFilter` on every handler of the root logger."""
    for handler in (root or logging.getLogger()).handlers:
        if not any(isinstance(f, SecretFilter) for f in handler.filters):
            handler.addFilter(SecretFilter())
