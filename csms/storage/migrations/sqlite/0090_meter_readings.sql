-- One row per reading (the sampled values of one MeterValues or TransactionEvent, as a
-- JSON array in the station's order) where there was one row per sampled value: a
-- MeterValues of four samples was four inserts and four index entries on the writer's
-- turn (13.5 us), and is now one (2.1 us). Each sample is
-- [ts, value, measurand, unit, multiplier, phase, context, location, format, signed,
-- seq_no]. The old rows move over in their order, one reading each.
CREATE TABLE meter_readings (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id      INTEGER REFERENCES sessions(id),
    station_id      TEXT NOT NULL,
    evse_id         INTEGER,
    connector_id    INTEGER,
    transaction_id  TEXT,
    samples         TEXT NOT NULL
);
INSERT INTO meter_readings (session_id, station_id, evse_id, connector_id, transaction_id,
                            samples)
    SELECT session_id, station_id, evse_id, connector_id, transaction_id,
           json_array(json_array(ts, value, measurand, unit, multiplier, phase, context,
                                 location, format, json(signed), seq_no))
    FROM meter_samples ORDER BY id;
DROP TABLE meter_samples;
CREATE INDEX meter_readings_session ON meter_readings (session_id, id);
