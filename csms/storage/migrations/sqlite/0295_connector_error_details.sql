-- What a 1.6 StatusNotification says of a connector's error beside its errorCode (1.6
-- §6.47: info, vendorId, vendorErrorCode): EVerest and the CharIN unified error codes
-- report every fault as OtherError with the real error in these, so the operator saw
-- "OtherError" for each. NULL when the station sent none (and for 2.0.1, whose
-- StatusNotification carries no error).
ALTER TABLE connectors ADD COLUMN error_info TEXT;
ALTER TABLE connectors ADD COLUMN vendor_id TEXT;
ALTER TABLE connectors ADD COLUMN vendor_error_code TEXT;
