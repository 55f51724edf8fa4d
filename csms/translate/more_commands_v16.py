"""Operator commands -> OCPP 1.6 CALLs: the cache, composite schedules, the driver's
running cost, and the 2.0.1-only commands refused with a reason (same function names as
:mod:`csms.translate.more_commands_v201`)."""

from __future__ import annotations

from typing import Any

from csms.translate.command_args import (
    BuiltCall,
    CommandError,
    WrongVersion,
    int_arg,
    profile_unit,
)
from csms.translate.more_args import RUNNING_COST_VENDOR, running_cost_data

__all__ = [
    "clear_cache", "clear_display_message", "cost_updated", "customer_information",
    "get_charging_profiles", "get_composite_schedule", "get_display_messages",
    "get_transaction_status", "publish_firmware", "set_display_message",
    "set_network_profile", "unpublish_firmware",
]


def _only_201(what: str) -> CommandError:
    return WrongVersion(f"{what} is OCPP 2.0.1 only; this station speaks 1.6")


def clear_cache(a: dict[str, Any]) -> BuiltCall:
    return BuiltCall("ClearCache", {})  # 1.6 §5.4


def get_composite_schedule(a: dict[str, Any]) -> BuiltCall:
    p: dict[str, Any] = {"connectorId": int_arg(a, "connector", 0),
                         "duration": int_arg(a, "duration", 3600)}
    if a.get("unit"):
        p["chargingRateUnit"] = profile_unit(a)
    return BuiltCall("GetCompositeSchedule", p)  # 1.6 §5.7


def get_charging_profiles(a: dict[str, Any]) -> BuiltCall:
    raise _only_201("get-charging-profiles (1.6 stations report no profiles:"
                    " get-composite-schedule shows what applies)")


def get_transaction_status(a: dict[str, Any]) -> BuiltCall:
    raise _only_201("get-transaction-status")


def customer_information(a: dict[str, Any]) -> BuiltCall:
    raise _only_201("customer-information")


def set_network_profile(a: dict[str, Any]) -> BuiltCall:
    raise _only_201("set-network-profile")


def set_display_message(a: dict[str, Any]) -> BuiltCall:
    raise _only_201("set-display-message (1.6 has no display messages)")


def get_display_messages(a: dict[str, Any]) -> BuiltCall:
    raise _only_201("get-display-messages (1.6 has no display messages)")


def clear_display_message(a: dict[str, Any]) -> BuiltCall:
    raise _only_201("clear-display-message (1.6 has no display messages)")


def cost_updated(a: dict[str, Any]) -> BuiltCall:
    """1.6 has no CostUpdated: a station that announced the OCA running-cost convention
    gets its DataTransfer (vendorId org.openchargealliance.costmsg, messageId RunningCost);
    any other 1.6 station gets nothing."""
    if not a.get("running_cost"):
        raise CommandError(
            "CostUpdated is OCPP 2.0.1; this 1.6 station has not announced the running-cost"
            " DataTransfer (csms stations running-cost STATION --on, when it supports it)")
    final = bool(a.get("final"))
    return BuiltCall("DataTransfer", {
        "vendorId": RUNNING_COST_VENDOR, "messageId": "FinalCost" if final else "RunningCost",
        "data": running_cost_data(a, final)})


def publish_firmware(a: dict[str, Any]) -> BuiltCall:
    raise _only_201("publish-firmware (a local controller, 2.0.1 L03)")


def unpublish_firmware(a: dict[str, Any]) -> BuiltCall:
    raise _only_201("unpublish-firmware (a local controller, 2.0.1 L04)")
