-- The limit a driver's app-session authorization was accepted with: the most the driver's
-- escrow pays for the session it starts (the smallest of the signed maximum amount, what
-- the escrow had available and what was left of the day's limit, in the tariff's minor
-- units), which that session is given (Session.limit_minor) and at which the
-- authorization counts in the driver's exposure until then. NULL for those accepted
-- before: their signed maximum amount.
ALTER TABLE session_authorizations ADD COLUMN limit_minor INTEGER;
