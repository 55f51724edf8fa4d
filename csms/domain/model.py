"""Domain records: plain dataclasses, no I/O."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

__all__ = [
    "BILLING_HOLD_FLAGS",
    "CENTRAL_TRANSACTION_ID_VERSIONS",
    "ID_TAG_PROBLEM",
    "MASTER_PASS_VERSIONS",
    "OCPP16",
    "OCPP201",
    "TIME_COST_PUSH_VERSIONS",
    "AuthStatus",
    "BootPolicy",
    "ErrorDetail",
    "IdTag",
    "MeterSample",
    "Session",
    "SessionStatus",
    "Station",
    "TagStatus",
    "ValueNote",
    "id_tag_problem",
    "numbered_by_central_system",
    "registry_disowns",
    "reused_after",
    "reused_transaction_id",
    "shared_beside",
    "shared_transaction_id",
    "station_transaction_id",
    "status_changed_since",
]


# A session's or station's OCPP version, as its WebSocket subprotocol names it (the
# protocol layer's OcppVersion members have these values).
OCPP16 = "ocpp1.6"
OCPP201 = "ocpp2.0.1"


class BootPolicy(enum.StrEnum):
    """How the central system answers a station's BootNotification."""

    ACCEPTED = "accepted"
    PENDING = "pending"
    REJECTED = "rejected"


class TagStatus(enum.StrEnum):
    """Whether the operator lets an id tag charge (its expiry is kept apart)."""

    ACCEPTED = "accepted"
    BLOCKED = "blocked"


class AuthStatus(enum.StrEnum):
    """Authorization outcome (1.6 AuthorizationStatus; 2.0.1 AuthorizationStatusEnumType)."""

    ACCEPTED = "Accepted"
    BLOCKED = "Blocked"
    EXPIRED = "Expired"
    INVALID = "Invalid"
    UNKNOWN = "Unknown"  # 2.0.1 only; 1.6 answers Invalid for an unknown tag
    NO_CREDIT = "NoCredit"  # 2.0.1; 1.6 answers Blocked: the driver's escrow does not cover it
    # 2.0.1: the connector is reserved for another tag; 1.6 answers Invalid
    NOT_AT_THIS_TIME = "NotAtThisTime"


@dataclass(frozen=True, slots=True)
class ErrorDetail:
    """What a station says of a connector's error beside its error code (1.6 §6.47
    StatusNotification.req: ``info``, free text about the error; ``vendorId``, whose codes
    ``vendorErrorCode`` are). EVerest reports every fault as OtherError with its origin in
    info and its type in vendorErrorCode; the CharIN unified error codes put the code in
    vendorErrorCode: without these the operator sees "OtherError" for every fault."""

    info: str | None = None
    vendor_id: str | None = None
    vendor_error_code: str | None = None

    def __bool__(self) -> bool:
        return bool(self.info or self.vendor_id or self.vendor_error_code)


class SessionStatus(enum.StrEnum):
    ACTIVE = "active"
    COMPLETED = "completed"


@dataclass(slots=True)
class Station:
    id: str
    boot_policy: BootPolicy = BootPolicy.ACCEPTED
    security_profile: int = 0
    password_hash: str | None = None
    ocpp_version: str | None = None
    vendor: str | None = None
    model: str | None = None
    firmware_version: str | None = None
    serial_number: str | None = None
    last_boot_at: datetime | None = None
    last_seen_at: datetime | None = None
    created_at: datetime | None = None
    connected_node: str | None = None  # the node holding its socket, None when offline
    connected_at: datetime | None = None
    max_power_w: Decimal | None = None  # registered by the operator (plausibility)
    reported_max_power_w: Decimal | None = None  # reported by the station (device model)
    host_address: str | None = None  # who is paid for its sessions (the operator if None)
    chain_station: int | None = None  # its index in the settlement contract's registry

    def power_limit_w(self, default: Decimal) -> Decimal:
        """The most this station can deliver: registered, else reported, else ``default``."""
        return self.max_power_w or self.reported_max_power_w or default

    def start_power_w(self, default: Decimal) -> Decimal:
        """The power a start of 0 is judged a placeholder by (csms.domain.energy: a reading
        beyond it since the start is a lifetime register, never billed): the registered
        maximum, else ``default``. A power the station reports may lower it, never lift
        it: a station that reports 4 MW would let its lifetime register through as energy
        (what it reports still lifts :meth:`power_limit_w`, ``energy_above_max_power``'s
        bound)."""
        if self.max_power_w:
            return self.max_power_w
        return min(self.reported_max_power_w or default, default)


ID_TAG_PROBLEM = "an id tag is 1 to 36 printable characters"


def id_tag_problem(tag: str) -> str | None:
    """Why ``tag`` cannot be an id tag an operator registers, or None: 1.6's CiString20 and
    2.0.1's idToken of 36 at most, and printable (a line break or an ESC shown in every
    list of tags, a terminal's and a log's, is a tag nobody can read or type)."""
    return None if 0 < len(tag) <= 36 and tag.isprintable() else ID_TAG_PROBLEM


GROUP_PROBLEM = "a group is 1 to 20 printable characters (1.6 parentIdTag)"


def group_problem(group: str) -> str | None:
    """Why ``group`` cannot be an id tag's group, or None: 1.6's parentIdTag is a
    CiString20, printable as a tag is (:func:`id_tag_problem`)."""
    return None if 0 < len(group) <= 20 and group.isprintable() else GROUP_PROBLEM


@dataclass(slots=True)
class IdTag:
    tag: str
    status: str = TagStatus.ACCEPTED.value  # a TagStatus value
    expires_at: datetime | None = None
    parent: str | None = None  # the group (1.6 parentIdTag, 2.0.1 groupIdToken)
    master: bool = False  # a master pass: stops any session of its group, starts none
    # when ``status`` took its value (None: since the tag was registered); the statuses
    # before it are kept by the storage (``Tx.tag_status_at``)
    status_since: datetime | None = None

    def authorize(self, now: datetime) -> AuthStatus:
        if self.status == TagStatus.BLOCKED:
            return AuthStatus.BLOCKED
        if self.expires_at is not None and self.expires_at <= now:
            return AuthStatus.EXPIRED
        return AuthStatus.ACCEPTED


def registry_disowns(tag: IdTag | None, started_at: datetime) -> bool:
    """Whether the operator's registry makes a session started on ``tag`` at
    ``started_at`` nobody's to pay: the tag unknown to it (None), blocked (reported stolen
    to the operator, say) or expired by the session's start. Expiry is judged at the start,
    not when the station sends it: a session an offline station started while the card was
    valid, and sent after the card expired, is its driver's. The driver brings none of
    these about (the operator keeps the registry)."""
    return tag is None or tag.authorize(started_at) is not AuthStatus.ACCEPTED


def status_changed_since(tag: IdTag | None, at: datetime) -> bool:
    """Whether ``tag``'s status now is not the one it had at ``at`` (changed after it):
    its status then is in the storage's history (``Tx.tag_status_at``)."""
    return tag is not None and tag.status_since is not None and at < tag.status_since


@dataclass(slots=True)
class MeterSample:
    """One sampled value of one meter reading, kept as the station sent it.

    ``value`` is the text of the value as received (1.6 sends strings, 2.0.1
    numbers); ``multiplier`` is 2.0.1's unitOfMeasure.multiplier (10^n);
    ``signed`` keeps signed meter data verbatim (1.6 SignedData value or
    2.0.1 signedMeterValue object).
    """

    timestamp: datetime
    value: str
    measurand: str = "Energy.Active.Import.Register"
    unit: str = "Wh"
    multiplier: int = 0
    phase: str | None = None
    context: str | None = None
    location: str | None = None
    format: str | None = None
    signed: dict[str, Any] | None = None
    seq_no: int | None = None


@dataclass(frozen=True, slots=True)
class ValueNote:
    """Something a transaction message carried that could not be taken as sent.

    The message is still acknowledged and stored (DESIGN.md: always acknowledge); the
    value is kept verbatim here and the session gets ``flag``.
    """

    flag: str  # time_unreadable | time_offset_assumed | value_out_of_range
    field: str  # where in the message ("timestamp", "seqNo", "meterValue[0].timestamp")
    value: str  # the text as received
    detail: str = ""


@dataclass(slots=True)
class Session:
    station_id: str
    ocpp_version: str
    transaction_id: str
    started_at: datetime
    connector_id: int | None = None
    evse_id: int | None = None
    id_tag: str | None = None
    auth_status: str | None = None
    stopped_at: datetime | None = None
    meter_start_wh: Decimal | None = None  # the reading billed from (see domain.energy)
    meter_stop_wh: Decimal | None = None
    reported_meter_start_wh: Decimal | None = None  # as the station sent it
    reported_meter_stop_wh: Decimal | None = None
    energy_wh: int | None = None
    status: SessionStatus = SessionStatus.ACTIVE
    stop_reason: str | None = None
    flags: list[str] = field(default_factory=list)
    last_seq_no: int | None = None
    start_key: str | None = None
    # the most the driver's escrow pays for it (minor units of its tariff), taken at its
    # start; None: no driver pays it, no limit (csms.service.limits)
    limit_minor: int | None = None
    # when its energy last grew (or, priced by the minute below its limit, its price: at a
    # message of its station), by the central system's clock (its start until it grows):
    # a session in progress that delivered nothing for longer than csms.service.holds
    # SILENT_GRACE_S no longer counts against its driver's escrow, however often its
    # station writes it. None for a session stored before it was kept; not compared
    energy_grew_at: datetime | None = field(default=None, compare=False)
    id: int | None = None
    # when the central system stored it (the storage's UTC wall clock at the insert): when
    # its first message, the start, arrived. Never updated; None until stored (and in the
    # tests' memory repository)
    created_at: datetime | None = None
    # when its row was last written (the storage's UTC wall clock): as read, or as the unit
    # wrote it since. A session in progress silent for long (csms.service.holds
    # SILENT_GRACE_S) is held when written again (csms.service.sessions). None until stored
    # (and in the tests' memory repository); not compared
    updated_at: datetime | None = field(default=None, compare=False)
    # Billing, owned by settlement (the storage writes them with set_session_settlement,
    # never with update_session): the price once priced, and where settlement stands.
    price_minor: int | None = None
    currency: str | None = None
    settlement_state: str | None = None

    def flag(self, name: str) -> None:
        if name not in self.flags:
            self.flags.append(name)

    @property
    def station_transaction_id(self) -> str:
        """The transactionId the station knows the session by (what a request to the
        station names): the stored one, less what :func:`reused_transaction_id` added."""
        return station_transaction_id(self.transaction_id)


# A 2.0.1 transactionId is a string of 36 characters at most (the schema's; a message
# with a longer one is refused before it reaches the service).
TRANSACTION_ID_MAX = 36
_REUSED = " reused after session "


def numbered_by_central_system(ocpp_version: str, transaction_id: str) -> bool:
    """Whether a session stored with ``transaction_id`` gets its own id as its
    transactionId: a 1.6 session not given one yet (1.6 §5.6: the central system
    assigns it). A 2.0.1 transactionId is the station's, "" as any other."""
    return ocpp_version in CENTRAL_TRANSACTION_ID_VERSIONS and transaction_id == ""


def reused_transaction_id(transaction_id: str, after: int) -> str:
    """The id a 2.0.1 session is stored under whose station started it under
    ``transaction_id`` after session ``after``, of that transactionId, had ended (its
    transaction counter restarted): longer than any transactionId a station can send, so
    no message of the station names it but through ``transaction_id``."""
    return f"{transaction_id}{_REUSED}{after:016d}"


def _reused(stored: str) -> tuple[str, int] | None:
    """The station's transactionId and the session after which it was taken again, of a
    session stored under ``stored`` (:func:`reused_transaction_id`); None for a
    transactionId stored as the station sent it."""
    head, sep, tail = stored.rpartition(_REUSED)
    if sep and len(stored) > TRANSACTION_ID_MAX and len(tail) == 16 and tail.isdigit():
        return head, int(tail)
    return None


_SHARED = " on EVSE "
_BESIDE = " beside session "


def shared_transaction_id(transaction_id: str, evse_id: int, beside: int) -> str:
    """The id a 2.0.1 session is stored under whose station started it under
    ``transaction_id`` on EVSE ``evse_id`` (at least 1) while session ``beside`` of that
    transactionId was on another EVSE (a station numbering its transactions per EVSE):
    longer than any transactionId a station can send, one per EVSE beside each session,
    so no message of the station names it but through ``transaction_id`` and its EVSE."""
    return f"{transaction_id}{_SHARED}{evse_id:020d}{_BESIDE}{beside:016d}"


def _shared(stored: str) -> tuple[str, int, int] | None:
    """The station's transactionId, the EVSE and the session beside which it was taken, of
    a session stored under ``stored`` (:func:`shared_transaction_id`); None for another."""
    head, sep, tail = stored.rpartition(_BESIDE)
    if not sep or len(stored) <= TRANSACTION_ID_MAX or len(tail) != 16 or not tail.isdigit():
        return None
    transaction_id, sep, evse = head.rpartition(_SHARED)
    if not sep or len(evse) != 20 or not evse.isdigit():
        return None
    return transaction_id, int(evse), int(tail)


def station_transaction_id(stored: str) -> str:
    """The station's transactionId of a session stored under ``stored``."""
    reused = _reused(stored)
    if reused is not None:
        return reused[0]
    shared = _shared(stored)
    return stored if shared is None else shared[0]


def shared_beside(stored: str) -> int | None:
    """The id of the session beside which (on another EVSE) the station started the session
    stored under ``stored`` under the same transactionId (None: not so started)."""
    shared = _shared(stored)
    return None if shared is None else shared[2]


def reused_after(stored: str) -> int | None:
    """The id of the session after whose end the station took again the transactionId of
    the session stored under ``stored`` (None: the first under it)."""
    reused = _reused(stored)
    return None if reused is None else reused[1]


# What a version has, as data (the code asks, it does not branch on the version):
# 2.0.1 C16 master passes (the station's AuthCtrlr.MasterPassGroupId; 1.6 has none, its
# tags of a group are stopped by that group's master only), and the running cost pushed
# by itself for a tariff with a time component (2.0.1 I03 CostUpdated; 1.6 has no cost
# message: only stations that announced the DataTransfer convention get it).
MASTER_PASS_VERSIONS = frozenset({OCPP201})
# the versions whose transactionId the central system assigns (1.6 §5.6); 2.0.1's is the
# station's (E01)
CENTRAL_TRANSACTION_ID_VERSIONS = frozenset({OCPP16})
TIME_COST_PUSH_VERSIONS = frozenset({OCPP201})

# Sessions with any of these flags are held back from settlement until an
# operator releases them: their energy cannot be trusted as billed.
BILLING_HOLD_FLAGS = frozenset(
    {
        "unknown_transaction",
        "meter_start_missing",
        "meter_stop_missing",
        "meter_went_backwards",
        # Transaction.Begin readings of the billed register that are not one value: the
        # register at the start is not known (csms.domain.energy)
        "begin_readings_differ",
        # a 1.6 meterStop and the station's Transaction.End reading of the register differ
        # (csms.domain.energy): counted to the lower, held
        "end_readings_differ",
        "started_missing",
        # signed meter data (OCMF): a signature that fails or cannot be checked, or
        # signed start/stop readings that differ from the billed ones
        "signature_invalid",
        "meter_key_unknown",
        "signed_energy_mismatch",
        # a signed begin/end reading the meter marks as faulty (ST not "G", EF with "E"),
        # or signed readings that are not this session's (another meter, time, token)
        "signed_reading_faulty",
        "signed_reading_foreign",
        # an unsigned start or stop, where the meter signed none, beyond what its signed
        # readings and the station's power allow (csms.metering.ocmf.unsigned_beyond_signed)
        "signed_reading_exceeded",
        # plausibility (csms.domain.energy): energy no station delivers in that time, times
        # it cannot have sent, values no meter reads
        "energy_above_max_power",
        "zero_duration_with_energy",
        "stop_before_start",
        "time_implausible",
        "time_unreadable",
        "value_out_of_range",
        # 2.0.1 C16: a master pass may stop any transaction and start none; a station that
        # starts one anyway is answered Invalid and nobody is billed for it
        "master_pass_start",
        # another session of the station on the same EVSE (1.6 connector) ran within this
        # one's time: two drivers billed for it (csms.service.sessions)
        "overlaps_session",
        # the billed register has readings outside the session's time (a stop dated
        # before them, a reading before the start): energy of the EVSE's time another
        # session there may be billed for too (csms.service.sessions)
        "readings_outside_session",
        # closed without its stop (csms.service.sessions): a new session started on its EVSE
        # after its last reading (the station lost its 1.6 StopTransaction or 2.0.1 Ended
        # event, a reboot), or an operator closed it (``csms sessions close``); billed from
        # its readings only, at its last one. Its real stop, if it comes while it is held,
        # completes it again and lifts this flag
        "stop_lost",
        # no EVSE (1.6 connector) named, or one below 1 (1.6 connectorId 0 is the whole
        # station): its times cannot be compared with the station's other sessions
        "evse_unknown",
        # settlement: no tariff valid at the start, values beyond the on-chain entry, a
        # tariff in another currency or decimals than the contract's billing unit (its
        # price in the tariff's minor units would be charged as that many billing units)
        "no_tariff",
        "not_settleable",
        "tariff_unit_mismatch",
        # settlement: the driver's stored authorization has a signature no encoding of one
        # reads (a database edited by hand: the remote start refuses such a signature)
        "bad_authorization",
        # a signed app session's start dated before the driver's authorization was given
        # (less the station clock's tolerance): time the driver never signed for
        # (csms.service.core)
        "start_before_authorization",
        # a signed app session whose register rose before the driver's authorization was
        # given (a transaction reported at plug-in, charging before the app started it):
        # energy the driver never signed for (csms.service.core)
        "energy_before_authorization",
        # the same session reported (at plug-in) more than the clock's tolerance before the
        # authorization, priced by the minute: minutes the driver never signed for
        "time_before_authorization",
        # a start the station sent long after the time it gives for it, though connected
        # since before that time: the session made longer than it ran (csms.service.core)
        "start_sent_late",
        # the station did not take the stop asked at the driver's limit: the session may
        # cost more than the driver's escrow pays for it (csms.service.limits)
        "limit_stop_refused",
        # the station accepted a remote stop of the session and charged on after it: its stop
        # dated, or its energy grown, beyond the tolerance after the accept
        # (csms.service.remote_stops)
        "charged_after_remote_stop",
        # completed far past the driver's limit with no stop asked (a station that sent no
        # reading to stop it at): the escrow pays the limit (csms.service.limits)
        "limit_overrun",
        # 2.0.1: an event of its transactionId named another EVSE than the session's (a
        # station numbering transactions per EVSE); 1.6: a MeterValues of its transactionId
        # named another connector: its readings and token were kept apart (an
        # ``evse_mismatch`` station event), never billed to this session
        # (csms.service.sessions)
        "evse_mismatch",
        # 2.0.1: a transaction started under the transactionId of one that had ended (a
        # station whose counter restarted): kept as a session of its own, under a stored
        # id no station sends (csms.domain.model.reused_transaction_id)
        "reused_transaction_id",
        # 1.6: a StopTransaction for the session, completed by another stop (a different
        # meterStop, time or idTag), came before it was settled: what it bills stays as the
        # first stop completed it; a ``stop_differs`` station event names both stops
        # (csms.service.sessions)
        "stop_differs",
        # 2.0.1: a TransactionEvent sent again under a seqNo the session had, with other
        # readings of the billed register than the first copy (which the session keeps); a
        # ``seq_conflict`` station event names both copies' (csms.service.sessions)
        "seq_conflict",
        # 2.0.1: a transaction started under the transactionId of a session on another EVSE
        # (a station numbering its transactions per EVSE): kept as a session of its own,
        # under a stored id no station sends (csms.domain.model.shared_transaction_id)
        "shared_transaction_id",
        # a driver's session in progress its station sent nothing for longer than the grace
        # (csms.service.holds SILENT_GRACE_S: it no longer counted against the escrow), then
        # heard of again, with a session or an authorization of its driver accepted
        # meanwhile: those settle first, the operator decides this one
        # (csms.service.sessions)
        "resumed_after_silence",
    }
)
