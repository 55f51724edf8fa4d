-- A session's start and its completion look for the station's other sessions on the same
-- EVSE (1.6 connector) whose times overlap its own (csms.service.sessions: two drivers
-- billed for one EVSE's same time): the active ones (stopped_at NULL) and those stopped
-- after its start. Keyed by the stop, this index finds them without reading the station's
-- earlier sessions (a station's sessions over years: an index by the start would read
-- every one started before).
CREATE INDEX sessions_evse ON sessions (station_id, evse_id, stopped_at);
