-- Mirrors ../sqlite/0335_known_clients.sql.
-- The clients (an IPv4 address, an IPv6 /64: csms.transport.source_of) a registered
-- station completed a login from that proved a secret (its password, its certificate):
-- their handshakes get a reserve of slots strangers never take (csms.service.known_clients,
-- csms.transport.HandshakeGate). One row per client, naming the station that logged in
-- from it last; written at most once an hour per client, at most a few per station and
-- a capped number in all, forgotten 30 days after the last login (seen_at).
CREATE TABLE known_clients (
    client      TEXT PRIMARY KEY,
    station_id  TEXT NOT NULL REFERENCES stations(id) ON DELETE CASCADE,
    seen_at     TEXT NOT NULL
);
CREATE INDEX known_clients_by_seen ON known_clients (seen_at);
