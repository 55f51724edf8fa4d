"""One settings object: CLI flags > environment ``CSMS_*`` > defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

__all__ = ["COMPRESSION_MODES", "Settings"]


COMPRESSION_MODES = ("stateless", "context", "off")


@dataclass(frozen=True, slots=True)
class Settings:
    db: str = "./csms.sqlite3"
    host: str = "127.0.0.1"
    port: int = 9000
    auto_register: bool = False
    heartbeat_interval: int = 300
    boot_retry_interval: int = 30
    call_timeout: float = 30.0
    max_frame_bytes: int = 65536
    # permessage-deflate: "stateless" (a zlib context per message, none kept between
    # messages: no memory per idle connection), "context" (contexts kept per connection,
    # ~50 KiB each, better ratio across messages) or "off"
    ws_compression: str = "stateless"  # one of COMPRESSION_MODES
    ping_interval: float = 20.0
    ping_timeout: float = 20.0
    close_timeout: float = 5.0
    validate: bool = True
    data_dir: str = "./.voltledger"
    admin_host: str = "127.0.0.1"
    admin_port: int = 9001  # 0 picks a free port; -1 turns the admin API off
    node_id: str = ""  # default: <hostname>:<port>
    mqtt: str = ""  # mqtt://host:port turns bus events on
    tls_port: int = 9443  # wss:// listener, when tls_cert is given
    tls_cert: str = ""
    tls_key: str = ""
    client_ca: str = ""  # CA that signs station certificates (security profile 3)
    chain: str = ""  # local | memory | http(s)://...: run the settlement worker in `serve`
    # the operator key for a JSON-RPC chain: a V3 keystore and the file holding its password
    keystore: str = ""
    keystore_password_file: str = ""
    batch_size: int = 1000
    max_wait: float = 60.0  # seconds a completed session waits for a fuller batch
    confirmations: int = 1
    auth_failure_limit: int = 5  # password attempts per minute per address (not per station)
    # Password checks (scrypt, ~40 ms of CPU each) running at once, in all; a station
    # gets one at a time. Beyond these a login waits briefly or is told to come back.
    auth_concurrency: int = 2
    # Connections of one listener (ws:// or wss://) still in their TLS or HTTP
    # handshake; more are dropped on arrival. Each handshake has handshake_timeout.
    max_handshakes: int = 500
    handshake_timeout: float = 10.0
    # Bytes of pongs / close frames a peer may leave unread before it is disconnected
    # (our own messages wait for the peer instead, at most ping_timeout seconds).
    write_buffer_limit: int = 262144
    # Stored station payloads per station and clock hour, in bytes (each payload counts
    # at least 256); beyond a quota payloads are counted and dropped (csms.service.quota).
    quota_data_transfer: int = 1048576
    quota_security_events: int = 262144
    quota_notifications: int = 262144
    # Station payloads are not stored when the database has less free space than this;
    # transaction data may use it (SQLite: the disk and max_page_count).
    storage_reserve: int = 67108864
    admin_public: bool = False  # let admin_host be beyond loopback (a warning is printed)
    # plausibility of billed energy (held when broken): a station's maximum power when none
    # is registered (csms stations set-max-power) or reported by the station, and the
    # window of transaction times: from the station's registration less time_past_days to
    # the receive time plus time_future_seconds
    default_max_power_kw: float = 350.0
    time_past_days: float = 30.0
    time_future_seconds: float = 600.0

    @property
    def admin_token_path(self) -> Path:
        """Where the admin API's bearer token lives (created by the first ``csms serve``)."""
        return Path(self.data_dir).expanduser() / "admin.token"

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then ``CSMS_<FIELD>`` from ``env``, then the non-None overrides."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"CSMS_{f.name.upper()}")
            if raw is None or raw == "":
                continue
            values[f.name] = _coerce(f.name, f.type, raw)
        settings = replace(cls(), **values)
        given = {k: v for k, v in overrides.items() if v is not None}
        return replace(settings, **given)


def _coerce(name: str, kind: Any, raw: str) -> Any:
    kind = str(kind)
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
        raise ValueError(f"CSMS_{name.upper()}={raw!r} is not a valid {kind}") from None
    return raw
