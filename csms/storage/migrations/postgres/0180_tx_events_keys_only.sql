-- A 2.0.1 TransactionEvent's seqNo is kept to tell a retried event from a new one, and for
-- nothing else: nothing ever read the type, the offline flag or the time of arrival stored
-- beside it (see the SQLite migration of the same number, where the keys alone make the
-- table one B-tree). Here the columns go, and with them a third of each row.
ALTER TABLE tx_events DROP COLUMN event_type;
ALTER TABLE tx_events DROP COLUMN offline;
ALTER TABLE tx_events DROP COLUMN received_at;
