"""Default values of the knobs the use cases and the settlement worker take.

Defined once here: :class:`csms.config.Settings` takes its defaults from these, and the
constructors of :class:`csms.service.charging.ChargingService` and
``settlement.worker.SettlementWorker`` use the same names, so a default never differs
between ``csms serve``, ``csms settle`` and a test that builds a service directly.
"""

from __future__ import annotations

from datetime import timedelta

from csms.domain.energy import DEFAULT_MAX_POWER_W
from csms.domain.tariff import BillingUnit

__all__ = [
    "AUTHORIZATION_MIN_SECONDS",
    "AUTH_CONCURRENCY",
    "AUTH_FAILURE_LIMIT",
    "BATCH_SIZE",
    "BILLING_UNIT",
    "BOOT_RETRY_INTERVAL",
    "CERT_DAYS",
    "CERT_RENEW_DAYS",
    "CONFIRMATIONS",
    "COST_UPDATE_INTERVAL",
    "CSR_LIMIT",
    "DEFAULT_MAX_POWER_KW",
    "EVENT_RETENTION_DAYS",
    "EXPIRY_MARGIN",
    "HEARTBEAT_INTERVAL",
    "HOLD_DEADLINE_WARNING",
    "HOLD_DECISION_MARGIN",
    "LIMIT_CHECK_SECONDS",
    "LIMIT_STOP_AGAIN",
    "MAX_CONNECTORS",
    "MAX_RESERVATION",
    "MAX_UPLOAD_BYTES",
    "MAX_WAIT",
    "MIN_NOTICE_CHARGE",
    "MIN_NOTICE_PERIOD",
    "MIN_SIGNED_CHARGE",
    "NOTICE_STOP_AHEAD",
    "QUEUE_SWEEP_SECONDS",
    "REMOTE_START_ANSWER_WAIT",
    "REMOTE_START_WINDOW",
    "SESSION_LIMIT_FLOOR",
    "SIGNED_STOP_AHEAD",
    "TIME_FUTURE",
    "TIME_PAST",
    "TRANSACTION_BURST_BYTES",
    "TRANSACTION_BYTES_PER_S",
    "TRANSACTION_MIN_CHARGE",
    "TRANSFER_HOURS",
]

HEARTBEAT_INTERVAL = 300  # seconds, sent in BootNotification answers
BOOT_RETRY_INTERVAL = 30  # seconds, sent with Pending / Rejected
# connectors stored per station (a 1.6 station's connector 0 included); a status for one
# more is not stored: DC hubs have a few per EVSE, a station never dozens
MAX_CONNECTORS = 64
TIME_PAST = timedelta(days=30)  # transaction times before registration less this: held
TIME_FUTURE = timedelta(minutes=10)  # ... or after receipt plus this: held
DEFAULT_MAX_POWER_KW = float(DEFAULT_MAX_POWER_W / 1000)
BATCH_SIZE = 1000  # sessions per settlement batch (the contract takes at most 1000)
# what the contract's billing unit is (csms.domain.tariff.BillingUnit): a cent of a euro;
# a tariff in another currency or decimals is refused, a session priced by one held
BILLING_UNIT = BillingUnit("EUR", 2)
MAX_WAIT = 60.0  # seconds a completed session waits for a fuller batch
# blocks before a batch counts as final; 0: by the chain (settlement.receipts
# default_confirmations: 1 on the local test chains, 64 on any other)
CONFIRMATIONS = 0
AUTH_FAILURE_LIMIT = 5  # password attempts per minute per address
AUTH_CONCURRENCY = 2  # password checks (scrypt) at once, in all
CERT_DAYS = 365  # validity of a station certificate the CA issues
CERT_RENEW_DAYS = 30.0  # a station is asked for a new CSR this long before its expires
CSR_LIMIT = 10  # CSRs a station may send per hour (each costs a signature check)
MAX_RESERVATION = timedelta(days=7)  # the longest a connector may be reserved ahead
MAX_UPLOAD_BYTES = 32 * 1024 * 1024  # the largest log file a station may upload
TRANSFER_HOURS = 24.0  # how long a log upload URL works (a firmware URL: its window)
# A station's budget of transaction message bytes (csms.service.throttle): refilled at
# TRANSACTION_BYTES_PER_S, holding at most TRANSACTION_BURST_BYTES; beyond it its answers
# wait. A busy station (4 connectors, 20 measurands every 10 s) sends ~1.3 KB/s; a week's
# replay after an outage comes in at the pace of its round trips (docs/reliability.md).
TRANSACTION_BYTES_PER_S = 32 * 1024
TRANSACTION_BURST_BYTES = 64 * 1024 * 1024
# What a transaction message takes from that budget at least, whatever its frame's size: what
# storing it may cost (a StartTransaction's frame is ~130 bytes; its session row, index
# entries and events ~0.5 KB, ~1.3 KB with the close of a session it supersedes). Charged
# by its frame alone, a station starting sessions took ~500,000 before its first wait.
TRANSACTION_MIN_CHARGE = 2048
# days station events (notifications, security events, DataTransfer, connections...) are
# kept; older ones are deleted by csms serve (csms.service.retention); 0: kept for ever
EVENT_RETENTION_DAYS = 90
# seconds between a node's looks at the requests queued for stations connected to it
# (sent at their boot; this catches one queued while the station booted) and expiries
QUEUE_SWEEP_SECONDS = 30.0
# seconds between running-cost messages to stations that announced the 1.6 convention
# (csms stations running-cost); 0: none
COST_UPDATE_INTERVAL = 60.0
# seconds a driver's signed app-session authorization binds a 1.6 StartTransaction with
# its tag at its station after the station accepted the remote start sent for it: a 1.6
# start names no remote start (2.0.1 binds by remoteStartId instead). A station waits its
# ConnectionTimeOut for the cable after a remote start; one above this window has the
# driver's late start refused.
REMOTE_START_WINDOW = 180
# seconds a station's Authorize or StartTransaction waits for the answer to the remote
# start of an app session with its tag to be stored (it is, as soon as it arrives)
REMOTE_START_ANSWER_WAIT = 10.0
# seconds between a node's checks of the sessions with a limit of the stations connected to
# it, between their readings (csms.service.limits: a time price, a signature expiring)
LIMIT_CHECK_SECONDS = 30.0
# seconds before a stop asked at a session's limit and not taken is asked again
LIMIT_STOP_AGAIN = 60.0
# seconds a chunk cut for a signed session whose signature expires soon has to be included
# on chain (settlement.worker)
EXPIRY_MARGIN = 900
# A session held for an operator's decision is decided by its start plus the contract's
# notice period (a driver may withdraw, or lower the terms, that long after announcing it)
# less this margin, the time a released session takes to be cut and included on chain
# (settlement.worker: a chunk's wait, a stuck transaction replaced); the settlement worker
# warns once when a held session is within HOLD_DEADLINE_WARNING of that time
HOLD_DECISION_MARGIN = timedelta(hours=1)
HOLD_DEADLINE_WARNING = timedelta(days=1)
# seconds before its signature expires that a signed app session still charging is stopped:
# the chunk's margin, and five minutes for the stop to take effect and the session to end
SIGNED_STOP_AHEAD = EXPIRY_MARGIN + 300
# seconds before its start plus the contract's notice period that a driver's session still
# charging is stopped: a withdrawal (or lower terms) announced right after the start may be
# made then, and a session settled later is refused for want of escrow (its host unpaid).
# SIGNED_STOP_AHEAD for the stop to take effect and its chunk to be settled, and the hour a
# held session keeps to be decided (HOLD_DECISION_MARGIN): the central system's clock is not
# the chain's, nor is a completed session always settled at once
NOTICE_STOP_AHEAD = SIGNED_STOP_AHEAD + int(HOLD_DECISION_MARGIN.total_seconds())
# seconds of charging the contract's notice period must leave a driver's session at the
# least: one hour, a fast (DC) charge from nearly empty, or 7 to 22 kWh on AC; less, and
# most sessions started by a driver would be stopped by their notice before they are done
MIN_NOTICE_CHARGE = 3600
# the least notice period a contract is deployed with (csms contract deploy): a driver's
# session still charging NOTICE_STOP_AHEAD before its start plus the notice period is
# stopped by a check that looks LIMIT_CHECK_SECONDS ahead, and MIN_NOTICE_CHARGE of
# charging is left before (8430 s: 2 h 20.5 min)
MIN_NOTICE_PERIOD = int(NOTICE_STOP_AHEAD + LIMIT_CHECK_SECONDS + MIN_NOTICE_CHARGE)
# seconds of charging a driver's signed app-session authorization must leave at the least
# (a quarter of an hour: less is hardly a charge worth starting, and what the station
# delivers before its stop takes effect is then most of the session)
MIN_SIGNED_CHARGE = 900
# the least time before its expiry an authorization is accepted with: a session it starts
# is stopped SIGNED_STOP_AHEAD before the expiry by a check that looks LIMIT_CHECK_SECONDS
# ahead, so that its chunk is settled while the signature holds (the contract pays no
# signed entry after its expiry); the station may start it up to REMOTE_START_WINDOW after
# the remote start; and MIN_SIGNED_CHARGE of charging is left between (38.5 minutes)
AUTHORIZATION_MIN_SECONDS = int(SIGNED_STOP_AHEAD + LIMIT_CHECK_SECONDS + REMOTE_START_WINDOW
                                + MIN_SIGNED_CHARGE)
# the least limit a session may have, in the tariff's minor units (a driver's per-session
# limit, or the maximum amount it signed; settlement.credit): the session is stopped at a
# reading once its price nears the limit, and what the station delivers until the stop
# takes effect (an interval of readings: ~0.15 at 22 kW, a reading a minute, 0.39 per
# kWh) is the host's loss; a limit of a few cents is mostly that. Never above the escrow
# reserve a session needs (settlement.credit.ChainCredit reserve_minor).
SESSION_LIMIT_FLOOR = 50
