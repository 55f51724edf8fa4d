"""What differs between the OCPP versions a simulated station speaks, and the one place
that picks it: :mod:`chargers_sim.v16` and :mod:`chargers_sim.v201` have the same
function names, described by :class:`VersionRules`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from chargers_sim import v16, v201
from csms.protocol import OcppVersion

if TYPE_CHECKING:
    from chargers_sim.connection import StationCore
    from chargers_sim.handlers import CallHandlers
    from chargers_sim.meter import Meter
    from chargers_sim.session import Session, TxMessage
    from chargers_sim.transactions import TransactionQueue

__all__ = ["VersionRules", "rules_for"]


class VersionRules(Protocol):
    """The functions of a per-version module."""

    def boot_payload(self, station_id: str, firmware_version: str) -> dict[str, Any]: ...

    def status_payload(self, connector: int, status: str) -> dict[str, Any]: ...

    def authorize_payload(self, id_tag: str) -> dict[str, Any]: ...

    def authorize_status(self, answer: dict[str, Any]) -> str: ...

    def sampled(self, meter: Meter, context: str, *, extra: bool,
                signed: dict[str, str] | None) -> list[dict[str, Any]]: ...

    def start_transaction(self, st: TransactionQueue, s: Session,
                          remote_start_id: int | None) -> None: ...

    def meter_values(self, st: TransactionQueue, s: Session) -> None: ...

    def stop_transaction(self, st: TransactionQueue, s: Session, reason: str) -> None: ...

    def before_sending(self, msg: TxMessage) -> None: ...

    def delivered(self, st: TransactionQueue, msg: TxMessage,
                  answer: dict[str, Any]) -> None: ...

    def handlers(self, st: CallHandlers) -> dict[str, Callable[[dict[str, Any]],
                                                                dict[str, Any]]]: ...

    def charging_schedule(self, p: dict[str, Any]) -> tuple[int, dict[str, Any]]: ...

    async def load_start(self, st: StationCore, register: int) -> Any: ...

    async def load_update(self, st: StationCore, txid: Any, seq: int, register: int) -> None: ...

    def firmware_status_call(self, status: str, request_id: int | None,
                             signed: bool) -> tuple[str, dict[str, Any]]: ...

    def pnc_over_data_transfer(self) -> bool: ...

    def log_status_call(self, status: str, request_id: int | None,
                        log_type: str) -> tuple[str, dict[str, Any]]: ...

    def reservation_expired_call(self, reservation_id: int
                                 ) -> tuple[str, dict[str, Any]] | None: ...

    def uploads_by_form(self, log_type: str) -> bool: ...

    def security_event_type(self, kind: str) -> str: ...

    def charging_limit_call(self, watts: float, source: str, evse: int,
                            grid_critical: bool | None) -> tuple[str, dict[str, Any]] | None: ...

    def charging_limit_cleared_call(self, source: str, evse: int
                                    ) -> tuple[str, dict[str, Any]] | None: ...

    def charging_rate_changed(self, st: TransactionQueue, s: Session) -> None: ...


_RULES: dict[OcppVersion, VersionRules] = {OcppVersion.V16: v16, OcppVersion.V201: v201}


def rules_for(version: OcppVersion) -> VersionRules:
    return _RULES[version]
