-- A station's message for a transaction it does not hold (a MeterValues or a stop with an
-- unknown transactionId) asks which stations hold that id: without this index the read
-- walks every session ever stored (55 ms at a million sessions, on the writer's turn), so
-- one station sending such messages could stall every other.
CREATE INDEX sessions_transaction ON sessions (transaction_id);
