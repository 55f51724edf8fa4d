-- 2.0.1 L03/L04 firmware publishing by a local controller, and requests kept for
-- stations that are offline (csms.domain.maintenance):
-- * firmware_images.md5: the image's MD5 (hex), the checksum PublishFirmware and
--   UnpublishFirmware carry (2.0.1 L03/L04);
-- * transfers.locations: the URLs a local controller publishes the image on (JSON list,
--   PublishFirmwareStatusNotification Published);
-- * transfers.queued_args: what the operator asked for (JSON), while the request waits
--   for its station (status queued); the URL and its token are made when it is sent.
ALTER TABLE firmware_images ADD COLUMN md5 TEXT;
ALTER TABLE transfers ADD COLUMN locations TEXT;
ALTER TABLE transfers ADD COLUMN queued_args TEXT;
CREATE INDEX transfers_queued ON transfers (station_id, id) WHERE status = 'queued';
