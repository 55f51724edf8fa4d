"""A simulated 1.6 station with ISO 15118 Plug & Charge over DataTransfer, as in the OCA
application note "Using ISO 15118 Plug & Charge with OCPP 1.6" (v1.0).

With ``pnc=True`` a 1.6 station announces it (configuration key ISO15118PnCEnabled, §2.1),
sends the note's messages (Authorize with a contract certificate, Get15118EVCertificate,
GetCertificateStatus, SignCertificate for its V2G certificate) as 2.0.1 payloads in a
DataTransfer, and answers the central system's (CertificateSigned, InstallCertificate,
DeleteCertificate, GetInstalledCertificateIds, TriggerMessage SignV2GCertificate). A
wrapped message it cannot read gets DataTransfer Rejected with the reason in ``data``.
"""

from __future__ import annotations

from typing import Any

from chargers_sim.driver import DriverHandlers
from csms.protocol.pnc16 import PncError, answer_data, is_pnc, unwrap, wrap

__all__ = ["PlugAndCharge16"]

ISO15118_2 = "urn:iso:15118:2:2013:MsgDef"


class PlugAndCharge16(DriverHandlers):
    """The Plug & Charge DataTransfer messages of a 1.6 station (see the module docstring)."""

    def _setup(self) -> None:
        super()._setup()
        # (action, 2.0.1 payload) of each wrapped CALL the central system sent
        self.pnc_received: list[tuple[str, dict[str, Any]]] = []
        if self.pnc_enabled:
            # application note §2.1: the keys a Plug & Charge station reports
            self.config.update({"ISO15118PnCEnabled": "true",
                                "CentralContractValidationAllowed": "true",
                                "ContractValidationOffline": "false",
                                "CertSigningWaitMinimum": "60",
                                "CertSigningRepeatTimes": "3"})

    @property
    def pnc_enabled(self) -> bool:
        return self.pnc and self.rules.pnc_over_data_transfer()

    # -- station -> central system -----------------------------------------------------
    async def pnc_call(self, action: str, inner: dict[str, Any]) -> dict[str, Any]:
        """Send a 2.0.1 ``action`` in a DataTransfer; its 2.0.1 answer (PncError when the
        central system refused the DataTransfer or its data is no valid answer)."""
        answer = await self.call("DataTransfer", wrap(action, inner))
        return unwrap(answer, "response", action)[1]

    async def pnc_authorize(self, emaid: str, certificate: str | None = None,
                            hash_data: list[dict[str, str]] | None = None) -> dict[str, Any]:
        """Authorize a contract (2.0.1 C07): the eMAID, and the contract certificate or
        its OCSP request data."""
        inner: dict[str, Any] = {"idToken": {"idToken": emaid, "type": "eMAID"}}
        if certificate is not None:
            inner["certificate"] = certificate
        if hash_data:
            inner["iso15118CertificateHashData"] = hash_data
        return await self.pnc_call("Authorize", inner)

    async def pnc_ev_certificate(self, exi_request: str,
                                 action: str = "Install") -> dict[str, Any]:
        return await self.pnc_call("Get15118EVCertificate", {
            "iso15118SchemaVersion": ISO15118_2, "action": action, "exiRequest": exi_request})

    async def pnc_certificate_status(self, ocsp: dict[str, str]) -> dict[str, Any]:
        return await self.pnc_call("GetCertificateStatus", {"ocspRequestData": ocsp})

    async def pnc_sign_v2g(self, common_name: str | None = None) -> dict[str, Any]:
        """A CSR for the station's ISO 15118 (SECC) certificate; CertificateSigned follows
        in a DataTransfer when the central system signs it."""
        return await self.pnc_call("SignCertificate", {
            "csr": self.pki.v2g_csr(common_name), "certificateType": "V2GCertificate"})

    # -- central system -> station -----------------------------------------------------
    def _data_transfer(self, p: dict[str, Any]) -> dict[str, Any]:
        if not (self.pnc_enabled and is_pnc(p)):
            return super()._data_transfer(p)
        answers = {"CertificateSigned": self._pnc_certificate_signed,
                   "InstallCertificate": self._pnc_install,
                   "DeleteCertificate": self._pnc_delete,
                   "GetInstalledCertificateIds": self._pnc_installed,
                   "TriggerMessage": self._pnc_trigger}
        if p.get("messageId") not in answers:
            return {"status": "UnknownMessageId"}
        try:
            action, inner = unwrap(p)
        except PncError as exc:
            return {"status": "Rejected", "data": str(exc)}
        self.pnc_received.append((action, inner))
        return {"status": "Accepted", "data": answer_data(action, answers[action](inner))}

    def _pnc_certificate_signed(self, p: dict[str, Any]) -> dict[str, Any]:
        if p.get("certificateType", "V2GCertificate") != "V2GCertificate":
            return {"status": "Rejected"}
        return {"status": self.pki.install_v2g_chain(p["certificateChain"])}

    def _pnc_install(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"status": self.pki.install_root(p["certificateType"], p["certificate"])}

    def _pnc_delete(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"status": self.pki.delete_root(p["certificateHashData"])}

    def _pnc_installed(self, p: dict[str, Any]) -> dict[str, Any]:
        found = self.pki.installed(list(p.get("certificateType") or []))
        if not found:
            return {"status": "NotFound"}
        return {"status": "Accepted", "certificateHashDataChain": [
            {"certificateType": use, "certificateHashData": data} for use, data in found]}

    def _pnc_trigger(self, p: dict[str, Any]) -> dict[str, Any]:
        if p["requestedMessage"] != "SignV2GCertificate":
            return {"status": "NotImplemented"}

        async def send() -> None:
            await self.pnc_sign_v2g()

        self._spawn(send(), "pnc-sign-v2g")
        return {"status": "Accepted"}
