"""ISO 15118 Plug & Charge on a simulated 2.0.1 station (``pnc=True``), with its own
messages (2.0.1 C07, K15-K17, M01/M02, M06), where a 1.6 station wraps them in
DataTransfer (:mod:`chargers_sim.pnc_v16`).

A session that :meth:`start_session` starts on such a station is an ISO 15118 EV's; the
session's id tag is the eMAID of its contract:

1. The EV's contract certificate: one a test gives it (``ev_contracts[emaid] = (leaf,
   issuer)``, e.g. issued by the central system's CA), else one the simulator's mobility
   operator root issues (:func:`chargers_sim.security.contract_chain`), valid
   ``ev_contract_days``. An EV without one asks for it: Get15118EVCertificate Install
   (M01); one whose contract ends within :data:`UPDATE_DAYS` asks for a new one: Update
   (M02). The EXI request is opaque to the central system (base64, from
   :func:`exi_request`); after an Accepted answer the EV has a new contract (the
   simulator does not decode the EXI response: it makes the new contract itself).
2. GetCertificateStatus (M06) with the OCSP request data of the contract certificate;
   the answers are kept in ``ev_answers``.
3. Authorize (C07) with the eMAID (type eMAID) and the certificate's hash data, or the
   PEM chain itself when no OCSP answer was had; the transaction starts with that token.
4. Once the transaction is started: NotifyEVChargingNeeds (K15) with the energy the EV
   wants, its departure time and its AC limits; then NotifyEVChargingSchedule (K17) with
   the schedule the EV chose within the station's cap, and again whenever the cap changes
   (a charging profile, an external limit: the EV renegotiates).

A remote start (RequestStartTransaction) is no Plug & Charge session.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from chargers_sim.connection import CallRejected
from chargers_sim.limits import ExternalLimits
from chargers_sim.pnc_v16 import ISO15118_2
from chargers_sim.security import contract_chain, hash_data
from chargers_sim.session import Session, now
from chargers_sim.transactions import StartRefused

__all__ = ["EV_DEPARTURE_S", "EV_ENERGY_WH", "OCSP_URL", "UPDATE_DAYS", "PlugAndCharge201",
           "exi_request"]

EV_ENERGY_WH = 30_000  # what the simulated EV asks for (ACChargingParameters.energyAmount)
EV_DEPARTURE_S = 4 * 3600  # its departure, from the start of the session
EV_MIN_CURRENT_A, EV_MAX_CURRENT_A, EV_MAX_VOLTAGE_V = 6, 32, 400
UPDATE_DAYS = 30  # a contract ending sooner is updated (M02)
OCSP_URL = "http://ocsp.mobility-operator.example"  # the responder of the contracts' CA
_PHASE_W_PER_A = 230.0 * 3


def exi_request(action: str, emaid: str) -> str:
    """The base64 EXI request of the simulated EV (ISO 15118-2 CertificateInstallationReq
    / CertificateUpdateReq); the same for the same contract, so an answer can be prepared
    for it (the local provider's ``--ev-cert-dir``)."""
    body = f"sim ISO 15118-2 Certificate{action}Req eMAID={emaid}".encode()
    return base64.b64encode(body).decode()


class PlugAndCharge201(ExternalLimits):
    """The ISO 15118 EV and its 2.0.1 messages (see the module docstring)."""

    def _setup(self) -> None:
        super()._setup()
        # eMAID -> (contract certificate, its issuer) of the EVs that come here
        self.ev_contracts: dict[str, tuple[x509.Certificate, x509.Certificate]] = {}
        # (action, answer) of every ISO 15118 message the central system answered
        self.ev_answers: list[tuple[str, dict[str, Any]]] = []
        self._emaids: set[str] = set()  # tags presented as eMAIDs
        self._ev_sessions: dict[int, Session] = {}  # connector -> its EV's session
        self._schedule_ids = 0

    @property
    def iso15118(self) -> bool:
        """A 2.0.1 Plug & Charge station."""
        return self.pnc and not self.rules.pnc_over_data_transfer()

    def _token_type(self, id_tag: str) -> str:
        return "eMAID" if id_tag in self._emaids else super()._token_type(id_tag)

    async def _ev_call(self, action: str, payload: dict[str, Any]) -> dict[str, Any] | None:
        try:
            answer = await self.call(action, payload)
        except (CallRejected, TimeoutError, ConnectionError):
            return None
        self.ev_answers.append((action, answer))
        return answer

    async def start_session(self, connector: int = 1, id_tag: str = "SIMTAG",
                            *, authorize: bool = True, remote_start_id: int | None = None,
                            reservation_id: int | None = None) -> None:
        if not self.iso15118 or remote_start_id is not None:
            await super().start_session(connector, id_tag, authorize=authorize,
                                        remote_start_id=remote_start_id,
                                        reservation_id=reservation_id)
            return
        self._emaids.add(id_tag)
        if authorize and self.online:
            await self._contract_authorize(id_tag)
            if self.refuses_start(id_tag):
                raise StartRefused(f"{id_tag} may not start a transaction here")
        await super().start_session(connector, id_tag, authorize=False,
                                    reservation_id=reservation_id)
        s = self._sessions[connector]
        self._ev_sessions[connector] = s
        self._spawn(self._negotiate(s), f"ev-{connector}")

    async def stop_session(self, connector: int = 1, reason: str = "Local",
                           stop_tag: str | None = None) -> Any:
        self._ev_sessions.pop(connector, None)
        return await super().stop_session(connector, reason, stop_tag)

    # -- the contract: M01/M02, M06, C07 ----------------------------------------------------
    async def _contract(self, emaid: str
                        ) -> tuple[x509.Certificate, x509.Certificate] | None:
        chain = self.ev_contracts.get(emaid)
        if chain is None and self.ev_contract_days > 0:
            chain = self.ev_contracts[emaid] = contract_chain(emaid, self.ev_contract_days)
        left = None if chain is None else chain[0].not_valid_after_utc - dt.datetime.now(dt.UTC)
        if left is not None and left > dt.timedelta(days=UPDATE_DAYS):
            return chain
        action = "Install" if chain is None else "Update"
        answer = await self._ev_call("Get15118EVCertificate", {
            "iso15118SchemaVersion": ISO15118_2, "action": action,
            "exiRequest": exi_request(action, emaid)})
        if answer is not None and answer["status"] == "Accepted":
            # the EV took the new contract from the EXI response
            chain = self.ev_contracts[emaid] = contract_chain(emaid, 365)
        return chain

    async def _contract_authorize(self, emaid: str) -> str | None:
        chain = await self._contract(emaid)
        request: dict[str, Any] = {"idToken": {"idToken": emaid, "type": "eMAID"}}
        if chain is not None:
            leaf, issuer = chain
            ocsp = {**hash_data(leaf, issuer), "responderURL": OCSP_URL}
            status = await self._ev_call("GetCertificateStatus", {"ocspRequestData": ocsp})
            if status is not None and status["status"] == "Accepted":
                request["iso15118CertificateHashData"] = [ocsp]
            else:  # no OCSP answer: the central system checks the chain itself (C07)
                request["certificate"] = "".join(
                    c.public_bytes(serialization.Encoding.PEM).decode() for c in chain)
        answer = await self._ev_call("Authorize", request)
        if answer is None:
            return None
        info = self.more.id_info(answer)
        if info.get("status") == "Accepted":
            self.auth_cache[emaid] = info
        else:
            self.auth_cache.pop(emaid, None)
        return str(info.get("status"))

    # -- the EV's needs and schedule: K15-K17 ----------------------------------------------
    async def _negotiate(self, s: Session) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(60):
                await s.confirmed.wait()  # the transaction exists at the central system
        if self._ev_sessions.get(s.connector) is not s:
            return
        departure = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=EV_DEPARTURE_S)
        await self._ev_call("NotifyEVChargingNeeds", {
            "evseId": s.connector, "maxScheduleTuples": 3, "chargingNeeds": {
                "requestedEnergyTransfer": "AC_three_phase",
                "departureTime": departure.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "acChargingParameters": {
                    "energyAmount": EV_ENERGY_WH, "evMinCurrent": EV_MIN_CURRENT_A,
                    "evMaxCurrent": EV_MAX_CURRENT_A, "evMaxVoltage": EV_MAX_VOLTAGE_V}}})
        # whatever the answer, the EV chooses a schedule within what the station offers
        await self._send_schedule(s)

    def ev_schedule(self, connector: int) -> dict[str, Any]:
        """The schedule the EV chooses (ChargingScheduleType): the station's cap (or its
        power) and the EV's own, until the energy it asked for is charged."""
        cap = self.cap_w(connector)
        power = min(self.power_w, EV_MAX_CURRENT_A * _PHASE_W_PER_A,
                    *(() if cap is None else (cap,)))
        periods: list[dict[str, Any]] = [{"startPeriod": 0, "limit": round(power, 1),
                                          "numberPhases": 3}]
        full = int(EV_ENERGY_WH * 3600 / power) if power > 0 else EV_DEPARTURE_S
        if full < EV_DEPARTURE_S:
            periods.append({"startPeriod": full, "limit": 0.0, "numberPhases": 3})
        self._schedule_ids += 1
        return {"id": self._schedule_ids, "chargingRateUnit": "W",
                "duration": EV_DEPARTURE_S, "chargingSchedulePeriod": periods}

    async def _send_schedule(self, s: Session) -> None:
        await self._ev_call("NotifyEVChargingSchedule", {
            "timeBase": now(), "evseId": s.connector,
            "chargingSchedule": self.ev_schedule(s.connector)})

    def _limits_changed(self, evse: int) -> None:
        super()._limits_changed(evse)
        for c, s in list(self._ev_sessions.items()):
            if evse in (0, c) and s.confirmed.is_set():
                self._spawn(self._renegotiate(s), f"ev-schedule-{c}")

    async def _renegotiate(self, s: Session) -> None:
        await asyncio.sleep(0.05)  # the answer to a SetChargingProfile goes out first
        if self._ev_sessions.get(s.connector) is s:
            await self._send_schedule(s)

    def _install_profile(self, p: dict[str, Any]) -> dict[str, Any]:
        answer = super()._install_profile(p)
        if answer["status"] == "Accepted":
            self._limits_changed(self.more.profile_of(p)[0])
        return answer
