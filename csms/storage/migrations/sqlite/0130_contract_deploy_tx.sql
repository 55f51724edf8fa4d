-- The transaction that created a batch's contract: receipts name it, so a driver's verifier
-- checks the contract was created by Settlement's own creation code (a contract whose
-- creation code wrote storage of its own and returned the genuine runtime code is told
-- apart there). NULL for a contract recorded before, or used without it.
ALTER TABLE batches ADD COLUMN deploy_tx TEXT;
