-- A 1.6 StopTransaction for a transaction the central system never assigned was kept (held)
-- under the station's transactionId. 1.6 ids are the central system's own (its sessions'
-- ids), so that id could be the one it assigned next to a new session of the same station,
-- whose start then failed at every retry (one station, one transactionId). Such sessions
-- now have an id the central system never assigns; those kept before move to it.
UPDATE sessions SET transaction_id = 'unknown-' || transaction_id
WHERE ocpp_version = 'ocpp1.6' AND flags LIKE '%"unknown_transaction"%'
  AND transaction_id NOT LIKE 'unknown-%';
