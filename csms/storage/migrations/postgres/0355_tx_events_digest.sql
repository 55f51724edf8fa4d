-- A 2.0.1 TransactionEvent retried under the same seqNo must be the same event (a retry is the
-- message sent again): a digest of what it said (csms.service.retries), beside its key, tells a
-- retry from another event under that number (see the SQLite migration of the same number).
-- NULL: nothing to compare with.
ALTER TABLE tx_events ADD COLUMN digest BIGINT;
