-- Several nodes on one database: each node's last beat, and leases (one holder at a time).
CREATE TABLE nodes (
    id          TEXT PRIMARY KEY,
    started_at  TEXT NOT NULL,
    last_seen   TEXT NOT NULL
);

CREATE TABLE leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);
