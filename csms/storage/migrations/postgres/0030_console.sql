-- The operator console's pages at scale (100,000 sessions): each list is read a page at a
-- time, newest first, by one of these indexes (keyset pagination on the id).
CREATE INDEX sessions_station_page ON sessions (station_id, id);
CREATE INDEX sessions_tag_page ON sessions (id_tag, id);
CREATE INDEX sessions_status_page ON sessions (status, id);
-- energy today: sessions stopped since midnight
CREATE INDEX sessions_stopped_at ON sessions (stopped_at);
-- held sessions: completed and not (yet) in the settlement worker's hands
CREATE INDEX sessions_unsettled ON sessions (status, settlement_state, id);
