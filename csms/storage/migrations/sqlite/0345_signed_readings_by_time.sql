-- A meter's signed reading by the time the meter signed it: a record sent again by another
-- station (one reading billed twice) is found among every station's sessions
-- (csms.service.signed_data, Tx.signed_readings_elsewhere).
CREATE INDEX signed_readings_time ON signed_readings (reading_time);
