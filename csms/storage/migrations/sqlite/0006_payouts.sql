-- Netted payment of anchored batches: the committed head of the payout hash chain, and
-- one row per chunk of payout lines with its own pending -> signed -> broadcast -> done.
ALTER TABLE batches ADD COLUMN payout_head TEXT;

-- The batch id used on chain: this database's random ledger id x 2^64 + the local id, so
-- that two databases anchoring to one contract never collide (decimal text: > 64 bits).
ALTER TABLE batches ADD COLUMN chain_batch_id TEXT;
CREATE TABLE ledger_info (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);

CREATE TABLE payouts (
    batch_id    INTEGER NOT NULL REFERENCES batches(id),
    chunk_no    INTEGER NOT NULL,
    lines       TEXT NOT NULL,
    next_hash   TEXT NOT NULL,
    state       TEXT NOT NULL,
    nonce       INTEGER,
    raw_tx      TEXT,
    tx_hash     TEXT,
    gas_used    INTEGER,
    paid        INTEGER,
    unpaid      INTEGER,
    detail      TEXT,
    PRIMARY KEY (batch_id, chunk_no)
);
