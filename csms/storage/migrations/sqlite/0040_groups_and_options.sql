-- Id tag groups (1.6 parentIdTag, 2.0.1 groupIdToken): the group is id_tags.parent;
-- a master pass stops any session of its group (2.0.1 C16) and starts none.
ALTER TABLE id_tags ADD COLUMN master INTEGER NOT NULL DEFAULT 0;

-- What the operator knows a station supports beyond its OCPP version, by name
-- (e.g. running_cost: the OCA running-cost DataTransfer convention of 1.6).
CREATE TABLE station_options (
    station_id  TEXT NOT NULL,
    name        TEXT NOT NULL,
    value       TEXT NOT NULL,
    PRIMARY KEY (station_id, name)
);
