-- Who is paid for a session: its station's host and the host's index in the settlement
-- contract (csms stations set-host) as they were when the session completed. A station
-- given another host (or an index of the operator's) before the session is settled pays
-- the new host only the sessions that complete afterwards. No row: the station had no host
-- then (the operator's own station), and the worker pays whom the station has when it
-- settles.
CREATE TABLE session_hosts (
    session_id     INTEGER PRIMARY KEY REFERENCES sessions(id),
    host           TEXT NOT NULL,
    chain_station  INTEGER NOT NULL
);
