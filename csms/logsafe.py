"""Keep credentials out of log lines, at every level.

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
"""

from __future__ import annotations

import logging
import re

__all__ = ["REDACTED", "SECRET_HEADERS", "SecretFilter", "install", "protect", "redact"]

REDACTED = "<redacted>"
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})

_NAME = r"[^\"']*(?:password|passphrase|secret|authorizationkey)[^\"']*"
_PATTERNS = [
    # HTTP credentials: "Basic dXNlcjpwYXNz...", "Bearer abc...", "Authorization: x"
    re.compile(r"(?i)(\b(?:basic|bearer|digest)\s+)[A-Za-z0-9+/=._~-]{12,}"),
    re.compile(r"(?i)(\bauthorization[\"']?\s*[:=,]\s*[\"']?(?:(?:basic|bearer|digest)\s+)?)"
               r"(?!<redacted>)[^\s\"',}]+"),
    # a URL's password: mqtt://user:password@broker, postgresql://user:password@host
    re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^\s/@:\"']*:)(?!<redacted>)[^\s/@\"']+(?=@)"),
    # 1.6 configuration: {"key": "AuthorizationKey", ..., "value": "..."} (JSON or repr)
    re.compile(r"(?i)([\"']key[\"']\s*:\s*[\"']" + _NAME + r"[\"'][^{}]*?"
               r"[\"']value[\"']\s*:\s*[\"'])[^\"']*"),
    # 2.0.1 variables: {"variable": {"name": "BasicAuthPassword"}, "attributeValue": "..."}
    re.compile(r"(?i)([\"']variable[\"']\s*:\s*\{\s*[\"']name[\"']\s*:\s*[\"']" + _NAME
               + r"[\"'][^}]*\}[^{}]*?[\"']attributeValue[\"']\s*:\s*[\"'])[^\"']*"),
    # operator commands: {"password": "..."}, {"SecurityCtrlr.BasicAuthPassword": "..."}
    re.compile(r"(?i)([\"']" + _NAME + r"[\"']\s*:\s*[\"'])[^\"']*"),
]


def redact(text: str) -> str:
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
    return text


class SecretFilter(logging.Filter):
    """Rewrites a record whose message holds a credential; never drops a record."""

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
        safe = redact(message)
        if safe != message:
            record.msg, record.args = safe, None
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
