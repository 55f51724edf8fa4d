-- Certificates the central system's CA issued to stations (security profile 3), and each
-- 2.0.1 station's device model: the variables of its reports, the reports asked for, and
-- its variable monitors.
CREATE TABLE issued_certificates (
    serial                TEXT PRIMARY KEY,
    station_id            TEXT NOT NULL,
    not_before            TEXT NOT NULL,
    not_after             TEXT NOT NULL,
    pem                   TEXT NOT NULL,
    issued_at             TEXT NOT NULL,
    status                TEXT NOT NULL DEFAULT 'Issued',
    renewal_requested_at  TEXT
);
CREATE INDEX issued_certificates_station ON issued_certificates (station_id, not_after);

CREATE TABLE report_requests (
    station_id    TEXT NOT NULL,
    request_id    INTEGER NOT NULL,
    kind          TEXT NOT NULL,
    requested_at  TEXT NOT NULL,
    last_seq_no   INTEGER,
    parts         INTEGER NOT NULL DEFAULT 0,
    completed_at  TEXT,
    PRIMARY KEY (station_id, request_id)
);

CREATE TABLE device_variables (
    station_id           TEXT NOT NULL,
    var_key              TEXT NOT NULL,
    component            TEXT NOT NULL,
    component_instance   TEXT,
    evse_id              INTEGER,
    connector_id         INTEGER,
    variable             TEXT NOT NULL,
    variable_instance    TEXT,
    attribute_type       TEXT NOT NULL,
    value                TEXT,
    mutability           TEXT,
    data_type            TEXT,
    unit                 TEXT,
    min_limit            TEXT,
    max_limit            TEXT,
    values_list          TEXT,
    supports_monitoring  INTEGER,
    updated_at           TEXT NOT NULL,
    PRIMARY KEY (station_id, var_key)
);

CREATE TABLE variable_monitors (
    station_id    TEXT NOT NULL,
    monitor_id    INTEGER NOT NULL,
    component     TEXT NOT NULL,
    variable      TEXT NOT NULL,
    var_key       TEXT NOT NULL,
    type          TEXT NOT NULL,
    value         TEXT NOT NULL,
    severity      INTEGER NOT NULL,
    in_transaction INTEGER NOT NULL,
    updated_at    TEXT NOT NULL,
    PRIMARY KEY (station_id, monitor_id)
);
