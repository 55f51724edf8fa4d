"""What the version modules share for certificates, the device model and monitoring:
the use cases are reached the same way; the payloads around them differ per version
(csms/translate/v16.py, v201.py)."""

from __future__ import annotations

from typing import Any

from csms.service.certificates import SignOutcome
from csms.service.charging import ChargingService
from csms.service.device_model import DeviceModel

__all__ = ["device_model", "sign"]


async def sign(svc: ChargingService, station_id: str, csr: str, kind: str,
               signed_payload: dict[str, Any]) -> SignOutcome:
    """Check and sign a station's CSR; when accepted, CertificateSigned (``signed_payload``
    with the chain) follows the answer."""
    certs = svc.certificates
    if certs is None:
        await svc.station_event(station_id, "security", {
            "type": "CsrRejected", "reason": "no CA on this central system"})
        return SignOutcome(False, "no CA on this central system")
    outcome = await certs.sign(station_id, csr, kind)
    if outcome.accepted:
        certs.deliver(station_id, {"certificateChain": outcome.chain, **signed_payload},
                      outcome.serial)
    return outcome


def device_model(svc: ChargingService) -> DeviceModel:
    """The device model use cases over the service's storage, clock and quota."""
    return DeviceModel(svc.repo, svc.quota, svc.clock)
