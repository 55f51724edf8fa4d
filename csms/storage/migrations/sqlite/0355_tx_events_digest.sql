-- A 2.0.1 TransactionEvent retried under the same seqNo must be the same event (a retry is the
-- message sent again): a digest of what it said (csms.service.retries), one integer beside its
-- key, tells a retry from another event under that number, which is recorded (``seq_conflict``)
-- where it was dropped unseen. NULL: nothing to compare with (an event stored before, or one
-- whose conflicting copy was recorded already: each event's conflict is recorded once).
ALTER TABLE tx_events ADD COLUMN digest INTEGER;
