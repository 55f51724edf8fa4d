-- Firmware images the central system serves, and file transfers: firmware updates (the
-- station downloads) and log requests (the station uploads), each reached through a
-- per-request token of which only the SHA-256 is kept. A transfer's id is the OCPP
-- requestId (csms.domain.maintenance).
CREATE TABLE firmware_images (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    version       TEXT NOT NULL UNIQUE,
    file_name     TEXT NOT NULL,
    size          INTEGER NOT NULL,
    sha256        TEXT NOT NULL,
    signature     TEXT,
    signing_cert  TEXT,
    created_at    TEXT NOT NULL
);

CREATE TABLE transfers (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    kind          TEXT NOT NULL,
    station_id    TEXT NOT NULL,
    token_hash    TEXT NOT NULL UNIQUE,
    status        TEXT NOT NULL,
    firmware_id   INTEGER,
    log_type      TEXT,
    file_name     TEXT,
    size          INTEGER,
    uploaded_at   TEXT,
    detail        TEXT,
    expires_at    TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE INDEX transfers_station ON transfers (station_id, kind, id);
