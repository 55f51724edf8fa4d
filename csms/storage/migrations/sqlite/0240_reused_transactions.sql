-- A station's 2.0.1 transactionId taken again after its transaction ended (a station whose
-- transaction counter restarted): each later transaction is a session of its own, stored
-- under an id no station sends (csms.domain.model.reused_transaction_id). The latest of
-- them, one row per station and transactionId: its events are found in one lookup, however
-- often the station took the id again.
CREATE TABLE reused_transactions (
    station_id      TEXT NOT NULL,
    transaction_id  TEXT NOT NULL,
    session_id      INTEGER NOT NULL REFERENCES sessions(id),
    PRIMARY KEY (station_id, transaction_id)
);
