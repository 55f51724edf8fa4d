-- The 1.6 StopTransaction that completed a session, by what makes a stop the same one
-- (csms.service.sessions _stop_key: its transactionId, time, meterStop and idTag): a stop
-- sent again for the session is a retry only if it is that stop (the station never got
-- the answer); another (a different meterStop, time or idTag) is kept, and holds the
-- session if it is not settled yet (stop_differs). One row per session completed by a
-- stop since this migration; a session without one is compared on its stored time and
-- meterStop only.
CREATE TABLE session_stops (
    session_id  INTEGER PRIMARY KEY REFERENCES sessions(id),
    stop_key    TEXT NOT NULL
);
