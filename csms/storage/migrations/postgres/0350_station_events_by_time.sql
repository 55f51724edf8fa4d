-- Mirrors ../sqlite/0350_station_events_by_time.sql.
-- Station events by the time they were stored: the retention task deletes those past
-- CSMS_EVENT_RETENTION_DAYS oldest first, a bounded unit at a time, without reading the
-- table through (csms.service.retention, Tx.old_station_events).
CREATE INDEX station_events_time ON station_events (ts, id);
