-- A 2.0.1 TransactionEvent's seqNo is recorded once per session, keyed by the session's
-- id where it was keyed by (station_id, transaction_id): see the SQLite migration of the
-- same number (an index of ~90-byte text keys, one page touched per running transaction;
-- session ids grow, so the running sessions' entries now fall on the index's last pages).
-- Every recorded event has its session (the two are written in one unit).
CREATE TABLE tx_events_by_session (
    session_id      BIGINT NOT NULL REFERENCES sessions(id),
    seq_no          BIGINT NOT NULL,
    event_type      TEXT NOT NULL,
    offline         BIGINT NOT NULL DEFAULT 0,
    received_at     TEXT NOT NULL,
    PRIMARY KEY (session_id, seq_no)
);
INSERT INTO tx_events_by_session (session_id, seq_no, event_type, offline, received_at)
    SELECT s.id, e.seq_no, e.event_type, e.offline, e.received_at
    FROM tx_events e
    JOIN sessions s ON s.station_id = e.station_id AND s.transaction_id = e.transaction_id
    ORDER BY s.id, e.seq_no;
DROP TABLE tx_events;
ALTER TABLE tx_events_by_session RENAME TO tx_events;
ALTER TABLE tx_events RENAME CONSTRAINT tx_events_by_session_pkey TO tx_events_pkey;
ALTER TABLE tx_events RENAME CONSTRAINT tx_events_by_session_session_id_fkey
    TO tx_events_session_id_fkey;
