"""ISO 15118 Plug & Charge for OCPP 1.6 stations: the 2.0.1 messages of the OCA
application note "Using ISO 15118 Plug & Charge with OCPP 1.6" (v1.0), carried in
DataTransfer (csms.protocol.pnc16 wraps and reads them).

Station -> central system (application note §3): Authorize, Get15118EVCertificate,
GetCertificateStatus and SignCertificate are answered by the same code as their 2.0.1
messages (csms.translate.v201), and CertificateSigned follows an accepted CSR inside a
DataTransfer too. A DataTransfer of another vendor keeps the generic answer. An inner
payload that is not the 2.0.1 request (not JSON, not an object, against its schema) is
answered ``Rejected`` with the reason in ``data``: the DataTransfer itself was well
formed, so no CALLERROR, and the connection lives.

Central system -> station: :func:`pnc_call` builds the DataTransfer that carries an
operator command for a 1.6 station as its 2.0.1 message (InstallCertificate of a V2G or MO
root, GetInstalledCertificateIds of those, DeleteCertificate, TriggerMessage
SignV2GCertificate; which commands go so is decided in csms.translate.commands_v16), and
:func:`read_answer` reads the 2.0.1 answer out of the DataTransfer answer.
"""

from __future__ import annotations

import logging
from typing import Any

from csms.protocol.pnc16 import (
    CSMS_TO_STATION,
    STATION_TO_CSMS,
    PncError,
    answer_data,
    is_pnc,
    unwrap,
    wrap,
)
from csms.service.charging import ChargingService
from csms.translate import commands_v201, security, v201
from csms.translate.command_args import BuiltCall, CommandError
from csms.translate.commands_v16 import PNC_COMMANDS, V2G_TRIGGER
from csms.translate.common import Handler
from csms.translate.common import data_transfer as generic_data_transfer

__all__ = ["data_transfer", "inner_action", "pnc_call", "read_answer"]

log = logging.getLogger("csms.translate")


async def sign_certificate(svc: ChargingService, station_id: str,
                           p: dict[str, Any]) -> dict[str, Any]:
    """SignCertificate over DataTransfer: a V2GCertificate CSR (the default here: the
    station's own certificate has the security extension's SignCertificate), checked and
    signed as in 2.0.1; CertificateSigned follows in a DataTransfer."""
    kind = p.get("certificateType", "V2GCertificate")
    outcome = await security.sign(svc, station_id, p["csr"], kind, {"certificateType": kind},
                                  via_data_transfer=True)
    if outcome.accepted:
        return {"status": "Accepted"}
    return {"status": "Rejected",
            "statusInfo": {"reasonCode": "InvalidCSR", "additionalInfo": outcome.reason[:512]}}


INBOUND: dict[str, Handler] = {
    "Authorize": v201.authorize,
    "Get15118EVCertificate": v201.get_15118_ev_certificate,
    "GetCertificateStatus": v201.get_certificate_status,
    "SignCertificate": sign_certificate,
}
assert set(INBOUND) == set(STATION_TO_CSMS)


async def data_transfer(svc: ChargingService, station_id: str,
                        p: dict[str, Any]) -> dict[str, Any]:
    """A 1.6 DataTransfer: the application note's messages answered, others as before."""
    if not is_pnc(p):
        return await generic_data_transfer(svc, station_id, p)
    message_id = p.get("messageId")
    handler = INBOUND.get(message_id) if isinstance(message_id, str) else None
    note: dict[str, Any] = {"vendorId": p["vendorId"], "messageId": str(message_id)[:50]}
    if handler is None:
        # a central-system-to-station message, or none of the note's
        await svc.station_event(station_id, "data_transfer", {**note, "status":
                                                              "UnknownMessageId"})
        return {"status": "UnknownMessageId"}
    try:
        action, inner = unwrap(p)
    except PncError as exc:
        log.warning("! %s: Plug & Charge %s refused: %s", station_id, message_id, exc)
        await svc.station_event(station_id, "data_transfer", {
            **note, "status": "Rejected", "reason": str(exc)})
        return {"status": "Rejected", "data": str(exc)}
    answer = await handler(svc, station_id, inner)
    await svc.station_event(station_id, "data_transfer", {
        **note, "status": "Accepted", "answer": str(answer.get("status") or answer.get(
            "idTokenInfo", {}).get("status", ""))})
    try:
        # our own answer, checked as the station will check it
        wrapped = answer_data(action, answer)
    except PncError as exc:
        log.error("! %s: Plug & Charge %s answer is not 2.0.1: %s", station_id, action, exc)
        return {"status": "Rejected", "data": f"{action}: no valid answer ({exc})"}
    return {"status": "Accepted", "data": wrapped}


# -- central system -> station -------------------------------------------------------------
def pnc_call(command: str, args: dict[str, Any]) -> BuiltCall:
    """The DataTransfer that carries ``command`` as its 2.0.1 message."""
    if command not in PNC_COMMANDS:
        raise CommandError(f"{command} has no Plug & Charge form for a 1.6 station")
    if command == "trigger":
        if str(args.get("message")) not in V2G_TRIGGER:
            raise CommandError("over Plug & Charge a 1.6 station is only asked for a V2G"
                               " certificate CSR (trigger V2GCertificate)")
        # the application note's only trigger; 2.0.1 names it SignV2GCertificate
        inner = BuiltCall("TriggerMessage", {"requestedMessage": "SignV2GCertificate"})
    else:
        build = getattr(commands_v201, command.replace("-", "_"))
        inner = build({k: v for k, v in args.items() if k != "pnc"})
    assert inner.action in CSMS_TO_STATION
    try:
        return BuiltCall("DataTransfer", wrap(inner.action, inner.payload))
    except PncError as exc:
        raise CommandError(f"invalid {inner.action}: {exc}") from None


def inner_action(call: BuiltCall) -> str:
    return str(call.payload.get("messageId", call.action))


def read_answer(call: BuiltCall, response: dict[str, Any]) -> dict[str, Any]:
    """The 2.0.1 answer inside the station's DataTransfer answer (:class:`PncError` when
    the station refused the DataTransfer or its ``data`` is no valid 2.0.1 answer)."""
    return unwrap(response, "response", inner_action(call))[1]
