-- Reservations (1.6 ReserveNow / CancelReservation, 2.0.1 H01-H04): one row per ReserveNow
-- the operator sent; its id is the OCPP reservationId (csms.domain.maintenance).
CREATE TABLE reservations (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    station_id    TEXT NOT NULL,
    connector_id  INTEGER NOT NULL,
    id_tag        TEXT NOT NULL,
    parent_tag    TEXT,
    expires_at    TEXT NOT NULL,
    status        TEXT NOT NULL,
    answer        TEXT,
    session_id    INTEGER,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE INDEX reservations_station ON reservations (station_id, status);
