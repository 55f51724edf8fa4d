-- The 1.6 FinalCost DataTransfer (OCA California Pricing note) goes to a station once per
-- session: the row is claimed before the CALL is sent, whoever retries the stop.
CREATE TABLE final_costs (
    session_id  INTEGER PRIMARY KEY,
    station_id  TEXT NOT NULL,
    cost        TEXT NOT NULL,
    currency    TEXT NOT NULL,
    claimed_at  TEXT NOT NULL,
    answer      TEXT
);

-- Settings of the central system kept by the operator, by name (e.g. master_pass_group:
-- the group whose tags are 2.0.1 master passes, C16 MasterPassGroupId).
CREATE TABLE central_options (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
