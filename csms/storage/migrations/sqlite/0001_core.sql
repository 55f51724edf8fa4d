-- Stations, connectors, id tags, sessions, meter samples, station events, outbox.
CREATE TABLE stations (
    id                TEXT PRIMARY KEY,
    boot_policy       TEXT NOT NULL DEFAULT 'accepted',
    security_profile  INTEGER NOT NULL DEFAULT 0,
    password_hash     TEXT,
    ocpp_version      TEXT,
    vendor            TEXT,
    model             TEXT,
    firmware_version  TEXT,
    serial_number     TEXT,
    last_boot_at      TEXT,
    last_seen_at      TEXT,
    created_at        TEXT NOT NULL
);

CREATE TABLE connectors (
    station_id    TEXT NOT NULL REFERENCES stations(id) ON DELETE CASCADE,
    evse_id       INTEGER NOT NULL,
    connector_id  INTEGER NOT NULL,
    status        TEXT NOT NULL,
    error_code    TEXT,
    updated_at    TEXT NOT NULL,
    PRIMARY KEY (station_id, evse_id, connector_id)
);

CREATE TABLE id_tags (
    tag         TEXT PRIMARY KEY,
    status      TEXT NOT NULL,
    expires_at  TEXT,
    parent      TEXT,
    created_at  TEXT NOT NULL
);

CREATE TABLE sessions (
    id                      INTEGER PRIMARY KEY AUTOINCREMENT,
    station_id              TEXT NOT NULL,
    connector_id            INTEGER,
    evse_id                 INTEGER,
    id_tag                  TEXT,
    auth_status             TEXT,
    ocpp_version            TEXT NOT NULL,
    transaction_id          TEXT NOT NULL,
    started_at              TEXT NOT NULL,
    stopped_at              TEXT,
    reported_meter_start_wh TEXT,
    reported_meter_stop_wh  TEXT,
    meter_start_wh          TEXT,
    meter_stop_wh           TEXT,
    energy_wh               INTEGER,
    status                  TEXT NOT NULL,
    stop_reason             TEXT,
    flags                   TEXT NOT NULL DEFAULT '[]',
    last_seq_no             INTEGER,
    start_key               TEXT,
    created_at              TEXT NOT NULL,
    updated_at              TEXT NOT NULL,
    UNIQUE (station_id, transaction_id)
);
CREATE UNIQUE INDEX sessions_start_key ON sessions (station_id, start_key);
CREATE INDEX sessions_status ON sessions (status, station_id);

CREATE TABLE meter_samples (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id      INTEGER REFERENCES sessions(id),
    station_id      TEXT NOT NULL,
    evse_id         INTEGER,
    connector_id    INTEGER,
    transaction_id  TEXT,
    seq_no          INTEGER,
    ts              TEXT NOT NULL,
    measurand       TEXT NOT NULL,
    phase           TEXT,
    context         TEXT,
    location        TEXT,
    unit            TEXT,
    multiplier      INTEGER NOT NULL DEFAULT 0,
    value           TEXT NOT NULL,
    format          TEXT,
    signed          TEXT
);
CREATE INDEX meter_samples_session ON meter_samples (session_id);

-- 2.0.1 E01/E02: (station, transactionId, seqNo) identifies one TransactionEvent.
CREATE TABLE tx_events (
    station_id      TEXT NOT NULL,
    transaction_id  TEXT NOT NULL,
    seq_no          INTEGER NOT NULL,
    event_type      TEXT NOT NULL,
    offline         INTEGER NOT NULL DEFAULT 0,
    received_at     TEXT NOT NULL,
    PRIMARY KEY (station_id, transaction_id, seq_no)
);

-- DataTransfer, SecurityEventNotification, other notifications, security findings.
CREATE TABLE station_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    station_id  TEXT NOT NULL,
    kind        TEXT NOT NULL,
    ts          TEXT NOT NULL,
    payload     TEXT NOT NULL
);
CREATE INDEX station_events_station ON station_events (station_id, id);

-- Events for the bus, written in the same transaction as the data they describe.
CREATE TABLE outbox (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id      TEXT NOT NULL UNIQUE,
    topic         TEXT NOT NULL,
    payload       TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    published_at  TEXT
);
CREATE INDEX outbox_unpublished ON outbox (published_at, id);

-- Completed sessions waiting for pricing and settlement.
CREATE TABLE settlement_queue (
    session_id   INTEGER PRIMARY KEY REFERENCES sessions(id),
    enqueued_at  TEXT NOT NULL
);
