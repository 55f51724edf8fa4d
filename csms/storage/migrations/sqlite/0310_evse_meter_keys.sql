-- The meter key the operator registered for one EVSE of a station (csms stations
-- set-meter-key --evse): a wallbox with a calibrated meter per EVSE signs each EVSE's
-- sessions with that meter's key. A session on an EVSE with a key here is verified with
-- it (csms.service.signed_data), the others with the station's key (stations.
-- meter_public_key); a key is never pinned here on first use.
CREATE TABLE evse_meter_keys (
    station_id  TEXT NOT NULL REFERENCES stations(id) ON DELETE CASCADE,
    evse_id     INTEGER NOT NULL,
    public_key  TEXT NOT NULL,
    PRIMARY KEY (station_id, evse_id)
);
