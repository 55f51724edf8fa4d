-- The most the driver's escrow pays for a session (its on-chain per-session limit for a
-- card, the signed maximum amount for an app session), in the tariff's minor units, taken
-- when the session starts; NULL for a session no driver pays (csms.service.limits).
ALTER TABLE sessions ADD COLUMN limit_minor BIGINT;
