-- A 2.0.1 TransactionEvent's seqNo is kept to tell a retried event from a new one, and for
-- nothing else: nothing ever read the type, the offline flag or the time of arrival stored
-- beside it (the session's flags say it had offline events; its readings carry their
-- times). Keys only, in a table without row ids, an event is one entry in one B-tree where
-- it was a row and an index entry in two: ~3.5 us less of each 2.0.1 event's unit of work
-- on the database's write turn (an event's SQL ~33 -> ~28 us, 200 running sessions). The
-- same table with the other columns, without row ids, was slower (~1.18x): its entries
-- no longer fit the pages of the index they replaced.
CREATE TABLE tx_events_keys (
    session_id      INTEGER NOT NULL REFERENCES sessions(id),
    seq_no          INTEGER NOT NULL,
    PRIMARY KEY (session_id, seq_no)
) WITHOUT ROWID;
INSERT INTO tx_events_keys (session_id, seq_no) SELECT session_id, seq_no FROM tx_events;
DROP TABLE tx_events;
ALTER TABLE tx_events_keys RENAME TO tx_events;
