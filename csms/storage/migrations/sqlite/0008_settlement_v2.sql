-- Settlement v2 (settlement/contracts/Settlement.vy): who is paid for a station, which
-- driver pays for a tag, drivers' signed app sessions, ledger sequence numbers, and one
-- settle transaction per batch (payment is part of it: the payout chunks are gone).
ALTER TABLE stations ADD COLUMN host_address TEXT;
ALTER TABLE stations ADD COLUMN chain_station INTEGER;

-- A card the driver linked on chain (commitment = keccak256(abi(driver, tag, salt))).
CREATE TABLE driver_cards (
    tag         TEXT PRIMARY KEY,
    driver      TEXT NOT NULL,
    salt        TEXT NOT NULL,
    commitment  TEXT NOT NULL,
    linked_at   TEXT NOT NULL
);
CREATE INDEX driver_cards_driver ON driver_cards (driver);

-- A driver's EIP-712 SessionAuthorization for an app start; bound to the session it starts.
CREATE TABLE session_authorizations (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    driver      TEXT NOT NULL,
    station_id  TEXT NOT NULL,
    id_tag      TEXT NOT NULL,
    body        TEXT NOT NULL,
    nonce       TEXT NOT NULL,
    expiry      INTEGER NOT NULL,
    session_id  INTEGER UNIQUE REFERENCES sessions(id),
    created_at  TEXT NOT NULL,
    UNIQUE (driver, nonce)
);

ALTER TABLE sessions ADD COLUMN seq INTEGER;
ALTER TABLE sessions ADD COLUMN unpaid_reason INTEGER;

ALTER TABLE batches ADD COLUMN ledger TEXT;
ALTER TABLE batches ADD COLUMN first_seq INTEGER;
ALTER TABLE batches ADD COLUMN entries TEXT;
ALTER TABLE batches ADD COLUMN auths TEXT;
ALTER TABLE batches ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
ALTER TABLE batch_items ADD COLUMN entry TEXT;

-- This database's ledger id, made with the database: a backup or a copy of it carries the
-- same id, so the contract's contiguous sequence numbers catch it settling sessions again.
INSERT INTO ledger_info (name, value)
SELECT 'ledger_id', CAST((abs(random()) % 4611686018427387903) + 1 AS TEXT)
WHERE NOT EXISTS (SELECT 1 FROM ledger_info WHERE name = 'ledger_id');
