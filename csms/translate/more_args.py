"""Readers of the arguments of the driver-facing and "remaining" operator commands, shared by
:mod:`csms.translate.more_commands_v16` and :mod:`csms.translate.more_commands_v201`: a
display message's text, the running-cost convention's payloads, a network profile."""

from __future__ import annotations

import itertools
import json
import unicodedata
from decimal import Decimal
from typing import Any

from csms.translate.command_args import CommandError, int_arg, str_arg

__all__ = [
    "MESSAGE_FORMATS", "MESSAGE_MAX_CHARS", "RUNNING_COST_VENDOR", "amount", "message_content",
    "next_request_id", "running_cost_data",
]

_request_ids = itertools.count(1)

# 2.0.1 MessageContentType: content <= 512 characters, language an RFC 5646 tag <= 8.
MESSAGE_MAX_CHARS = 512
MESSAGE_FORMATS = ("UTF8", "ASCII", "URI", "HTML")
# The OCA "California Pricing Requirements" whitepaper (OCPP 1.6 DataTransfer convention).
RUNNING_COST_VENDOR = "org.openchargealliance.costmsg"


def next_request_id() -> int:
    """A fresh requestId (2.0.1 GetDisplayMessages, CustomerInformation...), unique in
    this process; the station's notifications name it."""
    return next(_request_ids)


def message_content(text: Any, language: Any = None, fmt: Any = "UTF8") -> dict[str, Any]:
    """A display message's text as a 2.0.1 MessageContentType, refused (never cut) when a
    station could not show it as given: empty, over 512 characters, or with control
    characters (a line break aside) that a display would print as garbage or obey."""
    if not isinstance(text, str) or not text:
        raise CommandError("missing argument 'text'")
    if len(text) > MESSAGE_MAX_CHARS:
        raise CommandError(f"a message is at most {MESSAGE_MAX_CHARS} characters"
                           f" (got {len(text)})")
    bad = [c for c in text if c != "\n" and unicodedata.category(c) in ("Cc", "Cf", "Cs")]
    if bad:
        raise CommandError(f"a message may not hold control characters (found {bad[0]!r})")
    word = str(fmt or "UTF8")
    if word not in MESSAGE_FORMATS:
        raise CommandError(f"format is one of {', '.join(MESSAGE_FORMATS)}")
    if word == "ASCII" and not text.isascii():
        raise CommandError("an ASCII message holds ASCII characters only")
    content: dict[str, Any] = {"format": word, "content": text}
    if language:
        lang = str(language)
        if len(lang) > 8 or not all(p.isalnum() for p in lang.split("-")):
            raise CommandError(f"language is an RFC 5646 tag of at most 8 characters,"
                               f" e.g. en or de-DE (got {lang!r})")
        content["language"] = lang
    return content


def amount(a: dict[str, Any], key: str = "total_cost") -> Decimal:
    value = a.get(key)
    if value is None:
        raise CommandError(f"missing argument {key!r}")
    try:
        number = Decimal(str(value))
    except ArithmeticError:
        raise CommandError(f"{key} must be a number") from None
    if not number.is_finite() or number < 0:
        raise CommandError(f"{key} must be a number >= 0")
    return number


def running_cost_data(a: dict[str, Any], final: bool) -> str:
    """The data of the running-cost convention's DataTransfer (OCA "OCPP & California
    Pricing Requirements": RunningCost with transactionId, timestamp, meterValue (Wh),
    cost, state and chargingPrice; FinalCost with transactionId, cost, priceText and
    qrCodeText), as a JSON text. Stations refuse either without its required fields."""
    body: dict[str, Any] = {"transactionId": int_arg(a, "transaction_id"),
                            "cost": float(amount(a))}
    if final:
        body["priceText"] = str(a.get("text") or "")
        body["qrCodeText"] = str(a.get("qr_code") or "")
    else:
        body["timestamp"] = str_arg(a, "timestamp")
        body["meterValue"] = int_arg(a, "meter_wh", 0)
        body["state"] = "Charging"
        body["chargingPrice"] = {
            "kWhPrice": float(amount(a, "kwh_price")),
            "hourPrice": float(amount(a, "hour_price")),
            "flatFee": float(amount(a, "flat_fee"))}
        if a.get("text"):
            body["priceText"] = str(a["text"])
    return json.dumps(body, separators=(",", ":"))
