-- Mirrors ../sqlite/0060_v2g_and_configuration.sql.
-- ISO 15118 V2G (SECC) certificates the CA issues beside station certificates: which kind
-- a certificate is (NULL: a ChargingStationCertificate, as every row before this); only
-- station certificates are renewed by the renewal task.
ALTER TABLE issued_certificates ADD COLUMN certificate_type TEXT;

-- A 1.6 station's configuration is stored as its device model (component OCPP16, one
-- variable per key); a key the station answered in unknownKey is kept with unknown = 1.
ALTER TABLE device_variables ADD COLUMN unknown INTEGER;
