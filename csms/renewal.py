"""Renewal of station certificates before they expire (2.0.1 A02/A03, 1.6 security
whitepaper): a station connected to this node whose newest certificate from the central
system's CA ends within ``cert_renew_days`` is asked for a new CSR (2.0.1 TriggerMessage
SignChargingStationCertificate, 1.6 ExtendedTriggerMessage SignChargePointCertificate).
It answers with SignCertificate, which is signed like any other CSR. A station that is not
connected is asked when it is, on a later round."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from csms.link import CallFailed, CallTimeout, LinkClosed
from csms.protocol import OcppError
from csms.server import CentralSystem
from csms.service.certificates import CertificateUseCases
from csms.translate.commands import build_call

__all__ = ["RENEWAL_CONCURRENCY", "RENEWAL_INTERVAL", "renew_due", "run_renewal"]

log = logging.getLogger("csms.renewal")

RENEWAL_INTERVAL = 60.0  # seconds between rounds
# stations asked at once in a round: thousands due together (a fleet certified in one day)
# are asked this many at a time, not all at once, each CALL with its wait and its timeout
RENEWAL_CONCURRENCY = 32


async def renew_due(central: CentralSystem, certs: CertificateUseCases,
                    concurrency: int = RENEWAL_CONCURRENCY) -> list[str]:
    """One round: ask every due station connected here for a new CSR, at most
    ``concurrency`` at once, the next one in order of due as soon as one answers (a station
    slow to answer, or that never does, holds one of them for its call timeout, no other
    station's renewal); the stations that accepted, in the order they are due."""
    rows = [row for row in await certs.due_for_renewal()
            if row["station_id"] in central.connections]
    accepted = [False] * len(rows)
    due = iter(enumerate(rows))

    async def asking() -> None:
        for k, row in due:  # shared: each row is taken by one of them
            accepted[k] = await _ask(central, certs, row)

    try:
        async with asyncio.TaskGroup() as tg:
            for _ in range(min(concurrency, len(rows))):
                tg.create_task(asking())
    except ExceptionGroup as group:  # a storage failure, as the supervisor knows it
        raise group.exceptions[0] from None
    return [row["station_id"] for row, yes in zip(rows, accepted, strict=True) if yes]


async def _ask(central: CentralSystem, certs: CertificateUseCases,
               row: dict[str, Any]) -> bool:
    """Ask the station of the certificate ``row`` for a new CSR: whether it accepted."""
    conn = central.connections.get(row["station_id"])
    if conn is None:
        return False
    call = build_call(conn.version, "renew-certificate", {})
    try:
        answer = await conn.call(call.action, call.payload)
    except (LinkClosed, CallTimeout, CallFailed, OcppError) as exc:
        log.info("! %s: renewal not asked: %r", row["station_id"], exc)
        return False
    if answer.get("status") != "Accepted":
        log.info("! %s: renewal trigger answered %s", row["station_id"], answer.get("status"))
        return False
    await certs.renewal_requested(row["serial"])
    log.info("= %s: asked for a new CSR (certificate %s ends %s)", row["station_id"],
             row["serial"], row["not_after"].isoformat())
    return True


async def run_renewal(central: CentralSystem, certs: CertificateUseCases,
                      stop: asyncio.Event, interval: float = RENEWAL_INTERVAL) -> None:
    """Rounds until ``stop``; a storage failure is raised (the supervisor restarts it)."""
    while not stop.is_set():
        await renew_due(central, certs)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
