-- The connector a 1.6 remote start that an app-session authorization was accepted for
-- named (RemoteStartTransaction's connectorId): a start with the tag binds the driver's
-- signature only on that connector (a stranger who knows the tag, a plain string, and
-- starts with it on another connector of the station charges on nothing). NULL when the
-- remote start named none (the station chose), and on 2.0.1 (the remoteStartId binds).
ALTER TABLE session_authorizations ADD COLUMN connector_id INTEGER;
