-- When a session's energy last grew, by the central system's clock (its start until it
-- grows): a session in progress that delivered nothing for longer than the grace
-- (csms.service.holds SILENT_GRACE_S) no longer counts against its driver's escrow, however
-- often its station writes it (readings that never grow). None for the sessions stored
-- before: judged by their last write, as before.
ALTER TABLE sessions ADD COLUMN energy_grew_at TEXT;
