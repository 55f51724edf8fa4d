-- A node looks at the active sessions with a limit of its stations every 30 seconds,
-- between their readings (csms.service.limits): this index holds those sessions only, so
-- that the look costs nothing for the sessions without a limit (its columns are the ones
-- the read names: SQLite, without statistics, takes it only so).
CREATE INDEX sessions_limited ON sessions (status, limit_minor)
    WHERE status = 'active' AND limit_minor IS NOT NULL;
