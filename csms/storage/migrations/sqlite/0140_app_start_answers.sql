-- A driver's app-session authorization binds only the start it was accepted for: the
-- state of the remote start sent for it ('sent'; 'accepted' by the station; 'withdrawn':
-- refused, not answered in time, or the station went away), the remoteStartId sent with
-- it (2.0.1: only the transaction that reports it binds the authorization) and, on 1.6,
-- the end (unix seconds) of the window in which a StartTransaction with its tag at its
-- station binds it.
ALTER TABLE session_authorizations ADD COLUMN start_state TEXT NOT NULL DEFAULT 'sent';
ALTER TABLE session_authorizations ADD COLUMN remote_start_id INTEGER;
ALTER TABLE session_authorizations ADD COLUMN bindable_until INTEGER;
-- Authorizations waiting when this runs were kept whatever their remote start's answer:
-- withdrawn (the driver signs again); those bound to a session were started.
UPDATE session_authorizations SET start_state = 'withdrawn' WHERE session_id IS NULL;
UPDATE session_authorizations SET start_state = 'accepted' WHERE session_id IS NOT NULL;
