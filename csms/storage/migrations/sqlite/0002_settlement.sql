-- Tariffs, prices on sessions, settlement batches and their items.
CREATE TABLE tariffs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    station_id   TEXT NOT NULL,
    version      INTEGER NOT NULL,
    per_kwh      TEXT NOT NULL,
    per_minute   TEXT NOT NULL DEFAULT '0',
    session_fee  TEXT NOT NULL DEFAULT '0',
    currency     TEXT NOT NULL,
    decimals     INTEGER NOT NULL,
    valid_from   TEXT NOT NULL,
    UNIQUE (station_id, version)
);

ALTER TABLE sessions ADD COLUMN price_minor INTEGER;
ALTER TABLE sessions ADD COLUMN currency TEXT;
ALTER TABLE sessions ADD COLUMN tariff_id INTEGER;
ALTER TABLE sessions ADD COLUMN tariff_version INTEGER;
ALTER TABLE sessions ADD COLUMN settlement_state TEXT;

-- pending -> signed -> broadcast -> included -> finalized (settlement/states.py)
CREATE TABLE batches (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    state         TEXT NOT NULL,
    root          TEXT NOT NULL UNIQUE,
    count         INTEGER NOT NULL,
    chain_id      INTEGER,
    contract      TEXT,
    nonce         INTEGER,
    raw_tx        TEXT,
    tx_hash       TEXT,
    max_fee       TEXT,
    priority_fee  TEXT,
    broadcast_at  TEXT,
    block_number  INTEGER,
    block_hash    TEXT,
    gas_used      INTEGER,
    replaced      TEXT NOT NULL DEFAULT '[]',
    error         TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE INDEX batches_state ON batches (state);

CREATE TABLE batch_items (
    batch_id     INTEGER NOT NULL REFERENCES batches(id),
    position     INTEGER NOT NULL,
    session_id   INTEGER NOT NULL UNIQUE REFERENCES sessions(id),
    record       TEXT NOT NULL,
    samples      TEXT NOT NULL,
    leaf         TEXT NOT NULL,
    PRIMARY KEY (batch_id, position)
);
