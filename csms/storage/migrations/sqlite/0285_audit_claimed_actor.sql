-- Who really acted, and who a caller said acted: ``actor`` is the principal that was
-- authenticated (the admin token, named by the address it came from; the console's login;
-- the CLI's user on this machine), ``claimed_actor`` the name an admin API caller gave in
-- its X-Actor header (NULL: none). Any holder of the token may send any X-Actor, so it is
-- kept beside the actor, never in its place.
ALTER TABLE audit_log ADD COLUMN claimed_actor TEXT;
