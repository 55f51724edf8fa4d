-- Plausibility of billed energy: the station's maximum power as registered by the
-- operator and as reported by the station (2.0.1 device model), in W (decimal text).
ALTER TABLE stations ADD COLUMN max_power_w TEXT;
ALTER TABLE stations ADD COLUMN reported_max_power_w TEXT;

-- Signed readings per register: the OBIS code the meter wrote (RI) and its kind
-- (import | export | other); only the import register is compared with billed energy.
ALTER TABLE signed_readings ADD COLUMN register_code TEXT;
ALTER TABLE signed_readings ADD COLUMN register_kind TEXT;
