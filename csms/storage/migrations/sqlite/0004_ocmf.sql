-- Signed meter data (OCMF): the station's pinned meter key and, per signed reading of a
-- session, whether its signature verified.
ALTER TABLE stations ADD COLUMN meter_public_key TEXT;
ALTER TABLE stations ADD COLUMN meter_key_source TEXT;

CREATE TABLE signed_readings (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id     INTEGER NOT NULL REFERENCES sessions(id),
    station_id     TEXT NOT NULL,
    container_no   INTEGER NOT NULL,
    tx_code        TEXT,
    reading_time   TEXT,
    reading_wh     TEXT,
    resolution_wh  TEXT,
    meter_serial   TEXT,
    pagination     TEXT,
    public_key     TEXT,
    status         TEXT NOT NULL,
    detail         TEXT NOT NULL
);
CREATE INDEX signed_readings_session ON signed_readings (session_id);

