-- Which node holds a station's socket, the operator audit log, local list versions.
ALTER TABLE stations ADD COLUMN connected_node TEXT;
ALTER TABLE stations ADD COLUMN connected_at TEXT;

CREATE TABLE audit_log (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    at       TEXT NOT NULL,
    actor    TEXT NOT NULL,
    action   TEXT NOT NULL,
    target   TEXT,
    request  TEXT NOT NULL,
    result   TEXT NOT NULL,
    ok       INTEGER NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (id);

CREATE TABLE local_list_versions (
    station_id  TEXT PRIMARY KEY,
    version     INTEGER NOT NULL
);
