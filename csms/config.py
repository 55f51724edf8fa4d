"""One settings object, loaded and validated once per process.

Each value comes from the first of: a command-line flag, the environment variable
``CSMS_<FIELD>``, the settings file (TOML, named by ``--config`` or ``CSMS_CONFIG``),
the default below. The defaults of the use cases are those of
:mod:`csms.service.defaults`. :meth:`Settings.load` checks each value and the values
together, and raises :class:`SettingsError` (one line, naming the setting: by the
command's flag where it takes one, and its variable) otherwise;
:meth:`Settings.check_serving` adds what only a serving node needs (files that must
exist, an admin API kept on this machine).
"""

from __future__ import annotations

import errno
import ipaddress
import math
import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import Field, dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from csms.domain.tariff import BillingUnit
from csms.service import defaults

__all__ = [
    "COMPRESSION_MODES",
    "EVENT_LOOPS",
    "INTERNAL",
    "LOG_LEVELS",
    "MAX_COMMAND_TIMEOUT",
    "MAX_WORKERS",
    "MQTT_SCHEMES",
    "MqttBroker",
    "Named",
    "Settings",
    "SettingsError",
    "cannot_listen",
    "env_var",
    "host_name",
    "is_internal",
    "is_loopback",
    "option_name",
    "parse_mqtt_url",
]


COMPRESSION_MODES = ("stateless", "context", "off")
# The longest an operator's command may wait for the station's answer, in seconds (the
# admin API's and the CLI's "timeout"; without one, call_timeout).
MAX_COMMAND_TIMEOUT = 300.0
EVENT_LOOPS = ("auto", "uvloop", "asyncio")  # see csms.eventloop
LOG_LEVELS = ("debug", "info", "warning", "error")
MAX_WORKERS = 64  # csms serve --workers
# the largest number a setting takes (a SQLite / PostgreSQL bigint), and an OCPP integer's
MAX_NUMBER = 2**63 - 1
MAX_INT32 = 2**31 - 1
# the most read of a small file given by path (a settings, password or key file, a
# certificate, a keystore): a careless path, /dev/zero or a pipe that never ends, filled the
# memory of the machine
MAX_SETTINGS_FILE = 1024 * 1024


def read_limited(path: str | Path, limit: int = MAX_SETTINGS_FILE) -> bytes:
    """The bytes of the file ``path`` (or of a pipe, to its end), at most ``limit``: an
    OSError (``EFBIG``, naming the path) when it holds more."""
    with Path(path).expanduser().open("rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise OSError(errno.EFBIG, f"more than {limit} bytes: not read", str(path))
    return data


@dataclass(frozen=True, slots=True)
class Named:
    """A setting a :class:`SettingsError` names: by the flag of the command that takes
    one and its variable, or by its variable alone (``value``: what to set it to)."""

    setting: str
    value: str = ""

    def worded(self, flag_of: Callable[[str], str | None]) -> str:
        if self.setting in INTERNAL:
            return f"{self.setting} (set by csms serve --workers)"
        variable = env_var(self.setting) + (f"={self.value}" if self.value else "")
        flag = flag_of(self.setting)
        return f"{flag} ({variable})" if flag else variable


class SettingsError(ValueError):
    """A setting that cannot be used: one line for the operator, naming where it came
    from (a flag, an environment variable or the settings file).

    ``parts``: the line's text and the settings it names (:class:`Named`). A command
    words it with :meth:`worded`, naming each setting by a flag only where it takes one
    (most settings are set by their variable alone); ``str()`` names each as if by a
    flag of its own name (``--call-timeout (CSMS_CALL_TIMEOUT)``), for code outside a
    command."""

    def __init__(self, *parts: str | Named) -> None:
        self.parts = parts
        super().__init__(self.worded(option_name))

    def worded(self, flag_of: Callable[[str], str | None]) -> str:
        """The line, each setting named by ``flag_of(setting)`` (None: the command has no
        flag for it) and its variable."""
        return "".join(p if isinstance(p, str) else p.worded(flag_of) for p in self.parts)


def env_var(name: str) -> str:
    """The environment variable of a setting: ``CSMS_`` and the field name."""
    return f"CSMS_{name.upper()}"


def option_name(name: str) -> str:
    """The command-line flag of a setting."""
    return "--" + name.replace("_", "-")


def _internal(default: Any) -> Any:
    """A setting ``csms serve --workers`` gives each of its workers (csms.cli.workers
    hands them their settings whole): never read from a ``CSMS_*`` variable or the
    settings file, where a value would only break a node (another node's port shared, its
    admin API off)."""
    return field(default=default, metadata={"internal": True})


def is_internal(setting: Field[Any]) -> bool:
    """Whether a field of :class:`Settings` is one of a worker's own (see ``_internal``)."""
    return bool(setting.metadata.get("internal"))


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost; an empty host or 0.0.0.0 means every interface."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def host_name(value: str) -> str | None:
    """The name or address of a Host header (RFC 9110 §7.2: ``host[:port]``, an IPv6
    address in brackets), lower case and without a trailing dot (a name ending in one is
    the same name); None when it is not one."""
    value = value.strip()
    if value.startswith("["):
        name, bracket, rest = value[1:].partition("]")
        if not bracket or not name:
            return None
    else:
        name, colon, port = value.partition(":")
        rest = colon + port
    if rest and not (rest.startswith(":") and rest[1:].isascii() and rest[1:].isdigit()):
        return None  # an IPv6 address without brackets, or a port that is not a number
    name = name.lower().rstrip(".")
    if not name or any(c.isspace() or c in "/\\@?#[]" for c in name):
        return None
    return name


MQTT_SCHEMES = {"mqtt": False, "tcp": False, "mqtts": True}  # scheme -> over TLS


@dataclass(frozen=True, slots=True)
class MqttBroker:
    """Where and how a node reaches its MQTT broker. ``password`` is never shown: not in
    :attr:`url`, ``str()`` or ``repr()``."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: str = ""  # with tls: the CA the broker's certificate must chain to (else the system's)

    @property
    def url(self) -> str:
        """The broker for logs and the console: its URL with the user, without the password."""
        user = "" if self.username is None else quote(self.username, safe="") + "@"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{host}:{self.port}"

    def __str__(self) -> str:
        return self.url


def _without_password(url: str) -> str:
    """``url`` as an error may quote it: any password after ``user:`` replaced, up to the
    last ``@`` (a password may hold ``/``, ``?`` or ``#``, which end a URL's host part)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    if "@" in rest:
        userinfo, host = rest.rsplit("@", 1)
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":***"
        rest = f"{userinfo}@{host}"
    return f"{scheme}{sep}{rest}"


def parse_mqtt_url(url: str) -> MqttBroker:
    """``mqtt://[user[:password]@]host[:port]`` (or ``tcp://``; port 1883), or
    ``mqtts://...`` over TLS (port 8883); user and password percent-decoded. A
    ValueError (one line, never the password) for anything else."""
    try:
        parts = urlsplit(url.strip())
    except ValueError as exc:
        raise ValueError(f"not a URL ({exc}): {_without_password(url)!r}") from None
    scheme = parts.scheme.lower()
    if "@" in url and "@" not in parts.netloc:
        # the host part ended before the last @: in the password, a character a URL holds
        # only percent-encoded (never quoted here: what follows it may be the password)
        raise ValueError("the user or password holds /, ? or #: percent-encode them"
                         " (%2F, %3F, %23)")
    if scheme not in MQTT_SCHEMES or not parts.netloc:
        raise ValueError("expected mqtt://, tcp:// or mqtts:// (TLS) and"
                         f" [user[:password]@]host[:port], got {_without_password(url)!r}")
    try:
        port = parts.port
    except ValueError:
        port = 0
    else:
        port = port if port is not None else (8883 if MQTT_SCHEMES[scheme] else 1883)
    host_port = parts.netloc.rsplit("@", 1)[-1]
    if not 1 <= port <= 65535 or host_port.endswith(":"):
        raise ValueError("the port must be a number from 1 to 65535, got"
                         f" {_without_password(url)!r}")
    if not parts.hostname:
        raise ValueError(f"no broker host in {_without_password(url)!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("a path, query or fragment is not understood:"
                         f" {_without_password(url)!r}")
    return MqttBroker(
        parts.hostname, port, MQTT_SCHEMES[scheme],
        None if parts.username is None else unquote(parts.username),
        None if parts.password is None else unquote(parts.password))


@dataclass(frozen=True, slots=True)
class Settings:
    config: str = ""  # a TOML file of settings (lower precedence than env and flags)
    db: str = "./csms.sqlite3"
    host: str = "127.0.0.1"
    port: int = 9000  # -1: no plain ws:// listener
    auto_register: bool = False
    # stations one client (an IPv4 address or an IPv6 /64) may auto-register in an hour
    # (a sliding one); beyond it the handshake is refused (429). 0: no limit.
    auto_register_per_hour: int = 100
    heartbeat_interval: int = defaults.HEARTBEAT_INTERVAL
    boot_retry_interval: int = defaults.BOOT_RETRY_INTERVAL
    call_timeout: float = 30.0
    # the largest frame a station may send (a 1.6 StopTransaction's transactionData of a
    # long session: ~90 KB for 10 h of minute readings); frames over LARGE_FRAME_BYTES
    # are held within the node's large_frame_budget (csms.transport LargeFrames)
    max_frame_bytes: int = 1048576
    large_frame_budget: int = 8388608
    # connectors stored per station: a status for one more is not stored
    max_connectors: int = defaults.MAX_CONNECTORS
    # permessage-deflate: "stateless" (a zlib context per message, none kept between
    # messages: no memory per idle connection), "context" (contexts kept per connection,
    # ~50 KiB each, better ratio across messages) or "off"
    ws_compression: str = "stateless"  # one of COMPRESSION_MODES
    # the event loop of csms serve: "auto" (uvloop where installed, else the standard
    # loop), "uvloop", "asyncio" (the standard loop); uvloop executes ~5% fewer
    # instructions a message (docs/benchmarks.md, "uvloop by default")
    event_loop: str = "auto"  # one of EVENT_LOOPS
    # keepalive: a station silent this long is pinged (one that sends is not); under
    # the 60 s after which many NAT and mobile links forget an idle connection
    ping_interval: float = 50.0
    ping_timeout: float = 20.0
    close_timeout: float = 5.0
    validate: bool = True
    data_dir: str = "./.voltledger"
    admin_host: str = "127.0.0.1"
    admin_port: int = 9001  # 0 picks a free port; -1 turns the admin API off
    node_id: str = ""  # default: <hostname>:<port>
    # mqtt://[user[:password]@]host[:port] turns bus events on; mqtts:// over TLS
    mqtt: str = ""
    mqtt_ca: str = ""  # mqtts://: the CA of the broker's certificate (default: the system's)
    mqtt_password_file: str = ""  # the broker password, rather than in the URL
    tls_port: int = 9443  # wss:// listener, when tls_cert is given
    tls_cert: str = ""
    tls_key: str = ""
    client_ca: str = ""  # CA that signs station certificates (security profile 3)
    # The CA that signs stations' CSRs (SignCertificate): a PEM certificate and key; by
    # default one built in, made at first start in <data_dir>/ca/ (trusted for profile 3)
    ca_cert: str = ""
    ca_key: str = ""
    ca_organisation: str = ""  # a CSR's O must be this when set
    cert_days: int = defaults.CERT_DAYS  # validity of a station certificate issued
    cert_renew_days: float = defaults.CERT_RENEW_DAYS  # ask for a new CSR this long before
    csr_limit: int = defaults.CSR_LIMIT  # CSRs per station and hour
    # ISO 15118 local provider: EV contract certificate answers (<exiRequest hash>.exi)
    ev_cert_dir: str = ""
    # ISO 15118: the CA also signs stations' V2GCertificate (SECC) CSRs, in 2.0.1 and in
    # 1.6 Plug & Charge (tests and small sites; a public ecosystem needs a CPO sub-CA)
    v2g_sign: bool = False
    # 1.6: send GetConfiguration after an accepted BootNotification when the station's
    # stored configuration is empty or its firmware changed (kept as its device model)
    boot_get_configuration: bool = True
    chain: str = ""  # local | memory | http(s)://...: run the settlement worker in `serve`
    # the operator key for a JSON-RPC chain: a V3 keystore and the file holding its password
    keystore: str = ""
    keystore_password_file: str = ""
    batch_size: int = defaults.BATCH_SIZE
    max_wait: float = defaults.MAX_WAIT  # seconds a completed session waits for a fuller batch
    # blocks on top of a settle block before its batch is final; 0: by the chain (1 on the
    # local test chains, 64 on any other)
    confirmations: int = defaults.CONFIRMATIONS
    # What one billing unit of the settlement contract is: the minor unit of this currency,
    # 10^-billing_decimals of it (the contract knows only token base units per billing
    # unit, its deployment's --unit). Tariffs in another currency or decimals are refused
    # (csms tariffs set, the console); a session priced by one stored before is held.
    billing_currency: str = defaults.BILLING_UNIT.currency
    billing_decimals: int = defaults.BILLING_UNIT.decimals
    # password attempts per minute per address (not per station)
    auth_failure_limit: int = defaults.AUTH_FAILURE_LIMIT
    # Password checks (scrypt, ~40 ms of CPU each) running at once, in all; a station
    # gets one at a time, 2 more logins wait in its line (ranked: csms.service.ratelimit)
    # up to 5 s. Beyond these a login waits briefly or is told to come back (503).
    auth_concurrency: int = defaults.AUTH_CONCURRENCY
    # Connections of one listener (ws:// or wss://) still in their TLS or HTTP
    # handshake; more wait unread in a queue of handshake_queue sockets for a turn,
    # and beyond it are dropped on arrival (or, from an address holding fewer of them than
    # another, take the place of its newest queued one). Each has handshake_timeout
    # from its accept.
    max_handshakes: int = 500
    handshake_queue: int = 2000
    handshake_timeout: float = 10.0
    # Clients (addresses, IPv6 /64s) registered stations logged in from with a password
    # or a certificate, remembered (in the database too) for 30 days after their last
    # login: their handshakes may take a quarter of max_handshakes more slots, which
    # strangers never take, and queue ahead of strangers (csms.service.known_clients).
    # At most this many (the least recently seen give way); 0: no such lane.
    known_clients: int = 100000
    # Bytes of pongs / close frames a peer may leave unread before it is disconnected
    # (our own messages wait for the peer instead, at most ping_timeout seconds).
    write_buffer_limit: int = 262144
    # Stored station payloads per station and clock hour, in bytes (each payload counts
    # at least 256); beyond a quota payloads are counted and dropped (csms.service.quota).
    quota_data_transfer: int = 1048576
    quota_security_events: int = 262144
    quota_notifications: int = 262144
    # a station's online/offline events (each counts 256: 64 connections an hour)
    quota_connection_events: int = 32768
    # Days station events (notifications, security events, DataTransfer, connections...)
    # are kept: csms serve deletes older ones hourly, except those naming a session whose
    # billing is not final yet (csms.service.retention); 0: kept for ever.
    event_retention_days: float = defaults.EVENT_RETENTION_DAYS
    # A station's budget for its transaction messages (MeterValues, Start/StopTransaction,
    # TransactionEvent), in frame bytes: refilled at transaction_bytes_per_s, holding at
    # most transaction_burst_bytes; beyond it the answers to them wait (at most 5 s each),
    # never refused (csms.service.throttle). 0 bytes a second: no budget.
    transaction_bytes_per_s: int = defaults.TRANSACTION_BYTES_PER_S
    transaction_burst_bytes: int = defaults.TRANSACTION_BURST_BYTES
    # seconds between the running cost sent to stations marked with `csms stations
    # running-cost` (csms.service.driver); 0: only on demand (csms remote cost-updated)
    cost_update_interval: float = defaults.COST_UPDATE_INTERVAL
    # Station payloads are not stored when the database has less free space than this;
    # transaction data may use it (SQLite: the disk and max_page_count).
    storage_reserve: int = 67108864
    admin_public: bool = False  # let admin_host be beyond loopback (a warning is printed)
    # Host names the admin listener answers besides localhost, loopback addresses and the
    # address a request reached (comma separated: a reverse proxy's public name); any other
    # Host header is refused (421), as a page of another site whose name was made to
    # resolve to this machine sends (DNS rebinding). "*": any Host (no such check).
    admin_hosts: str = ""
    # plausibility of billed energy (held when broken): a station's maximum power when none
    # is registered (csms stations set-max-power) or reported by the station, and the
    # window of transaction times: from the station's registration less time_past_days to
    # the receive time plus time_future_seconds
    default_max_power_kw: float = defaults.DEFAULT_MAX_POWER_KW
    time_past_days: float = defaults.TIME_PAST.total_seconds() / 86400
    time_future_seconds: float = defaults.TIME_FUTURE.total_seconds()
    log_level: str = "info"  # one of LOG_LEVELS (csms serve)
    # The station file listener (csms.files): firmware downloads and log uploads over HTTP
    # (HTTPS with tls_cert), reached by per-request URLs; files_url is the address stations
    # use when it differs from http(s)://files_host:files_port (a proxy, a public name).
    files_host: str = ""  # default: host (where stations reach the OCPP listener)
    files_port: int = 0  # 0 picks a free port (each URL names it); -1: no file transfers
    files_url: str = ""
    max_upload_bytes: int = defaults.MAX_UPLOAD_BYTES
    transfer_hours: float = defaults.TRANSFER_HOURS  # how long a log upload URL works
    # csms serve --workers N: N processes sharing the listening ports (SO_REUSEPORT), each
    # a node of the cluster (PostgreSQL, or one SQLite file shared by the processes of one
    # machine); one process holds at most ulimit -n sockets
    workers: int = 1
    # Set by csms serve for its workers only (never by a variable or the settings file):
    # listen with SO_REUSEPORT beside the others
    reuse_port: bool = _internal(False)
    # how many processes of this machine they are, who share its cores (PostgreSQL: the
    # batches in flight, csms.storage.postgres.COMMITTERS)
    worker_count: int = _internal(1)
    # which one this is (0: the admin API's), and the folder where the others answer
    # their metrics for worker 0's /metrics (csms.metrics)
    worker_index: int = _internal(0)
    metrics_dir: str = _internal("")

    @property
    def billing_unit(self) -> BillingUnit:
        """The settlement's billing unit (what a tariff's currency and decimals must be)."""
        return BillingUnit(self.billing_currency.upper(), self.billing_decimals)

    @property
    def admin_token_path(self) -> Path:
        """Where the admin API's bearer token lives (created by the first ``csms serve``)."""
        return Path(self.data_dir).expanduser() / "admin.token"

    @property
    def admin_host_names(self) -> tuple[str, ...]:
        """The names of ``admin_hosts``, as given."""
        return tuple(n.strip() for n in self.admin_hosts.split(",") if n.strip())

    @property
    def uses_sqlite(self) -> bool:
        return not self.db.startswith(("postgresql://", "postgres://"))

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then the settings file, then ``CSMS_<FIELD>`` from ``env``, then the
        non-None ``overrides`` (the flags); checked with :meth:`check`."""
        env = os.environ if env is None else env
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(overrides) - set(known))
        if unknown:
            raise TypeError(f"no such setting: {', '.join(unknown)}")
        flags = {k: v for k, v in overrides.items() if v is not None}
        from_env: dict[str, Any] = {}
        for f in fields(cls):
            if is_internal(f):
                continue
            raw = env.get(env_var(f.name))
            if raw is None or raw == "":
                continue
            from_env[f.name] = _coerce(f.name, str(f.type), raw, env_var(f.name))
        path = flags.get("config") or from_env.get("config") or ""
        from_file = _read_file(str(path), known) if path else {}
        settings = replace(cls(), **{**from_file, **from_env, **flags})
        settings.check()
        return settings

    def check(self) -> None:
        """Values that are wrong whatever the command: one :class:`SettingsError`."""
        if self.ws_compression not in COMPRESSION_MODES:
            raise _error("ws_compression", f"choose one of {', '.join(COMPRESSION_MODES)}")
        if self.event_loop not in EVENT_LOOPS:
            raise _error("event_loop", f"choose one of {', '.join(EVENT_LOOPS)}")
        if self.log_level.lower() not in LOG_LEVELS:
            raise _error("log_level", f"choose one of {', '.join(LOG_LEVELS)}")
        if self.heartbeat_interval > MAX_INT32:  # an OCPP integer (2.0.1: int32)
            raise _error("heartbeat_interval", f"at most {MAX_INT32} seconds")
        for f in fields(self):  # a number the database and the protocol hold; no NUL byte
            value = getattr(self, f.name)
            if isinstance(value, str) and "\x00" in value:  # no path, URL or name holds one
                raise _error(f.name, "holds a NUL byte")
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if isinstance(value, float) and not math.isfinite(value):
                raise _error(f.name, "a finite number")
            if abs(value) > MAX_NUMBER:
                raise _error(f.name, f"at most {MAX_NUMBER}")
        for name, low in (("port", -1), ("admin_port", -1), ("tls_port", 0),
                          ("files_port", -1)):
            if not low <= getattr(self, name) <= 65535:
                raise _error(name, f"a port from {low} to 65535")
        for name in ("heartbeat_interval", "boot_retry_interval", "batch_size",
                     "max_frame_bytes", "max_handshakes", "max_connectors",
                     "auth_concurrency", "max_upload_bytes", "cert_days", "csr_limit",
                     "workers", "worker_count"):
            if getattr(self, name) < 1:
                raise _error(name, "at least 1")
        if not 0 <= self.worker_index < self.worker_count:
            raise _error("worker_index", f"from 0 to {self.worker_count - 1}")
        if self.workers > MAX_WORKERS:
            raise _error("workers", f"at most {MAX_WORKERS}")
        for name in ("max_wait", "confirmations", "call_timeout", "ping_interval",
                     "ping_timeout", "close_timeout", "handshake_timeout", "time_past_days",
                     "time_future_seconds", "storage_reserve", "write_buffer_limit",
                     "cert_renew_days", "handshake_queue", "transaction_bytes_per_s",
                     "transaction_burst_bytes", "large_frame_budget",
                     "auto_register_per_hour", "known_clients", "event_retention_days"):
            if getattr(self, name) < 0:
                raise _error(name, "not negative")
        if self.transfer_hours <= 0:
            raise _error("transfer_hours", "more than 0")
        for name in self.admin_host_names:
            if name != "*" and host_name(name) is None:
                raise _error("admin_hosts", f"{name!r} is not a host name or address")
        if self.files_url and not self.files_url.startswith(("http://", "https://")):
            raise _error("files_url", "an http(s):// URL")
        if not self.billing_currency.isalnum() or len(self.billing_currency) > 10:
            raise _error("billing_currency", "a currency code of letters and digits")
        if not 0 <= self.billing_decimals <= 18:
            raise _error("billing_decimals", "from 0 to 18")
        if self.default_max_power_kw <= 0:
            raise _error("default_max_power_kw", "more than 0")
        if not self.db:
            raise _error("db", "a SQLite file or a postgresql:// URL")
        if not self.data_dir:
            raise _error("data_dir", "a folder")
        if self.client_ca and not self.tls_cert:
            raise _error("client_ca", "needs ", Named("tls_cert"))
        if bool(self.ca_cert) != bool(self.ca_key):
            raise _error("ca_cert" if not self.ca_cert else "ca_key",
                         "give both ", Named("ca_cert"), " and ", Named("ca_key"))
        broker = self._mqtt_url()
        if self.mqtt_ca and (broker is None or not broker.tls):
            raise _error("mqtt_ca", "needs an mqtts:// ", Named("mqtt"))
        if self.mqtt_password_file:
            if broker is None or broker.username is None:
                raise _error("mqtt_password_file", "needs a user name in ", Named("mqtt"),
                             ": mqtt://user@host")
            if broker.password is not None:
                raise _error("mqtt_password_file", Named("mqtt"), " has a password already;"
                             " give it in one place")
        if self.chain and self.chain not in ("local", "memory") and not self.chain.startswith(
                ("http://", "https://")):
            raise _error("chain", "local, memory or an http(s):// RPC URL")

    def _mqtt_url(self) -> MqttBroker | None:
        if not self.mqtt:
            return None
        try:
            return parse_mqtt_url(self.mqtt)
        except ValueError as exc:
            raise _error("mqtt", str(exc)) from None

    def mqtt_broker(self) -> MqttBroker | None:
        """The broker of ``mqtt`` (None: no broker), with the password of
        ``mqtt_password_file`` (the file's text without its line end) and ``mqtt_ca``."""
        broker = self._mqtt_url()
        if broker is None:
            return None
        if self.mqtt_password_file:
            try:
                password = read_limited(self.mqtt_password_file).decode("utf-8").rstrip("\r\n")
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                raise _error("mqtt_password_file", f"cannot read {self.mqtt_password_file}:"
                             f" {reason}") from None
            broker = replace(broker, password=password)
        return replace(broker, ca_file=str(Path(self.mqtt_ca).expanduser())) if (
            self.mqtt_ca) else broker

    def check_serving(self) -> None:
        """What ``csms serve`` needs beyond :meth:`check`: its TLS files exist, the MQTT
        broker's CA is a certificate and its password file is readable, an RPC chain's
        keystore and password file exist, and the admin API stays on this machine unless
        ``admin_public`` says otherwise."""
        if self.port < 0 and not self.tls_cert:  # refused before a CA or a token is made
            raise _error("port", "-1 turns the ws:// listener off and no ", Named("tls_cert"),
                         " is given: nothing to listen on")
        for name in ("tls_cert", "tls_key", "client_ca", "ca_cert", "ca_key", "mqtt_ca"):
            path = getattr(self, name)
            if path and not Path(path).expanduser().is_file():
                raise _error(name, f"no such file: {path}")
        if self.mqtt_ca:
            import ssl  # here: every command loads the settings, few check a CA

            try:
                ssl.create_default_context(cafile=str(Path(self.mqtt_ca).expanduser()))
            except (ssl.SSLError, OSError, ValueError):
                raise _error("mqtt_ca", f"{self.mqtt_ca} is not a PEM CA certificate"
                             ) from None
        self.mqtt_broker()  # the password file is readable
        if self.chain.startswith(("http://", "https://", "ws://", "wss://")):
            # the chain is opened once the node listens: its key is checked before
            for name in ("keystore", "keystore_password_file"):
                path = getattr(self, name)
                if not path:
                    raise _error(name, "needed to settle on the RPC chain of ", Named("chain"))
                if not Path(path).expanduser().is_file():
                    raise _error(name, f"no such file: {path}")
        if self.workers > 1:
            # each worker is a node of the cluster: nodes share PostgreSQL, or the
            # processes of one machine share a SQLite file (csms.cli.workers)
            if self.db == ":memory:":
                raise _error("workers", "several workers are several nodes of one database:"
                             " a SQLite file or PostgreSQL, not :memory:")
            if self.port == 0 or (self.tls_cert and self.tls_port == 0):
                raise _error("workers", "the workers share their ports: give fixed ports,"
                             " not 0")
            if self.files_url:
                raise _error("workers", "each worker has its own file listener: ",
                             Named("files_url"), " (one address for all) is not supported"
                             " with several workers")
        if self.admin_port >= 0 and not self.admin_public and not is_loopback(
                self.admin_host):
            raise _error("admin_host", f"{self.admin_host or 'every interface'} is beyond this"
                         " machine; add ", Named("admin_public", "true"), " to expose the"
                         " admin API there")

    def check_database(self) -> None:
        """A SQLite ``db`` names a file that is (or can become) a SQLite database."""
        if not self.uses_sqlite or self.db == ":memory:":
            return
        path = Path(self.db).expanduser()
        try:
            found = path.stat()
        except (FileNotFoundError, NotADirectoryError):  # told below: its folder
            found = None
        except OSError as exc:  # a name too long...
            raise _error("db", f"cannot use {self.db}: {exc.strerror or exc}") from None
        if found is not None and stat.S_ISDIR(found.st_mode):
            raise _error("db", f"{self.db} is a folder, not a SQLite file")
        if found is not None and not stat.S_ISREG(found.st_mode):
            # a pipe or a device: opening it may wait for ever, or read without end
            raise _error("db", f"{self.db} is not a regular file, not a SQLite file")
        if found is not None:
            try:
                with path.open("rb") as f:
                    head = f.read(16)
            except OSError as exc:
                raise _error("db", f"cannot open {self.db}: {exc.strerror or exc}") from None
            if head and head != b"SQLite format 3\x00":
                raise _error("db", f"{self.db} is not a SQLite database")
            return
        parent = path.resolve().parent
        if not parent.is_dir():
            raise _error("db", f"database folder {parent} does not exist")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise _error("db", f"cannot create {self.db}: folder {parent} is not writable")

    def data_folder(self, *, create: bool = True) -> Path:
        """The data folder, made when ``create`` and missing; a usable folder or a
        :class:`SettingsError`."""
        path = Path(self.data_dir).expanduser()
        if path.exists() and not path.is_dir():
            raise _error("data_dir", f"{self.data_dir} is a file, not a folder")
        if not path.exists():
            if not create:
                return path
            try:  # exist_ok: another process (a sibling worker) may make it meanwhile
                path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise _error("data_dir", f"cannot create {self.data_dir}:"
                             f" {exc.strerror or exc}") from None
        elif create and not os.access(path, os.W_OK | os.X_OK):
            raise _error("data_dir", f"{self.data_dir} is not writable")
        return path


# the settings csms serve --workers gives its workers, never an operator
INTERNAL = frozenset(f.name for f in fields(Settings) if is_internal(f))


def _error(name: str, *message: str | Named) -> SettingsError:
    return SettingsError(Named(name), ": ", *message)


def cannot_listen(port_setting: str, host_setting: str, host: str, port: int,
                  exc: OSError) -> SettingsError:
    """A listener that cannot be bound, naming the setting to change: its port's (in use,
    or not this user's to take), or its host's (an address this machine does not have)."""
    import errno
    import socket

    unknown_host = isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL
    if exc.errno and not isinstance(exc, socket.gaierror):
        reason = os.strerror(exc.errno).lower()  # not asyncio's "error while attempting..."
    else:
        reason = str(exc.strerror or exc)
    where = f"[{host}]:{port}" if ":" in host else f"{host or '*'}:{port}"
    return _error(host_setting if unknown_host else port_setting,
                  f"cannot listen on {where}: {reason}")


def _coerce(name: str, kind: str, raw: str, where: str) -> Any:
    try:
        if kind == "bool":
            if raw.lower() in {"1", "true", "yes", "on"}:
                return True
            if raw.lower() in {"0", "false", "no", "off"}:
                return False
            raise ValueError(raw)
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
    except ValueError:
        raise SettingsError(f"{where}={raw!r} is not a valid {kind}") from None
    return raw


def _read_file(path: str, known: Mapping[str, Any]) -> dict[str, Any]:
    """The settings of a TOML file: ``db = "..."``, ``port = 9000`` (field names, ``-`` or
    ``_``); an unknown name or a value of the wrong type is an error."""
    import tomllib

    try:
        data = tomllib.loads(read_limited(path).decode("utf-8"))
    except OSError as exc:
        raise SettingsError(f"--config (CSMS_CONFIG): cannot read {path}:"
                            f" {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise SettingsError(f"--config (CSMS_CONFIG): {path} is not TOML: not UTF-8 text"
                            ) from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"--config (CSMS_CONFIG): {path} is not TOML: {exc}") from None
    values: dict[str, Any] = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        if name not in known or name == "config" or is_internal(known[name]):
            raise SettingsError(f"{path}: no setting {key!r}")
        kind = str(known[name].type)
        ok = {"bool": isinstance(value, bool),
              "int": isinstance(value, int) and not isinstance(value, bool),
              "float": isinstance(value, int | float) and not isinstance(value, bool),
              "str": isinstance(value, str)}.get(kind, False)
        if not ok:
            raise SettingsError(f"{path}: {key} = {value!r} is not a valid {kind}")
        values[name] = float(value) if kind == "float" else value
    return values
