-- A 2.0.1 TransactionEvent's seqNo is recorded once per session, keyed by the session's
-- id where it was keyed by (station_id, transaction_id): the key of every event was ~90
-- bytes of text, so the index's entries landed on a different page for every running
-- transaction, and that index was 29 of the ~52 pages a batch of ~75 units wrote to the
-- WAL (and, at ten million events, most of a gigabyte). Session ids grow, so the running
-- sessions' entries now fall on the index's last few pages. Every recorded event has its
-- session (the two are written in one unit), so every row moves over.
CREATE TABLE tx_events_by_session (
    session_id      INTEGER NOT NULL REFERENCES sessions(id),
    seq_no          INTEGER NOT NULL,
    event_type      TEXT NOT NULL,
    offline         INTEGER NOT NULL DEFAULT 0,
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
