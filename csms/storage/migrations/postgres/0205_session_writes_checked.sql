-- A session's update on PostgreSQL also requires the row to still hold what its unit of
-- work read (its status, its flags and the columns it changes): units run under READ
-- COMMITTED on several connections and nodes at once, without a row lock on what they
-- read, and one that wrote back a session read before another transaction's commit
-- overwrote that commit (an operator's decision, the settlement worker's hold, the
-- session's completion). The update is held back and sent with the unit's next
-- statement, so no row count comes back to the unit: the update calls this when it
-- found no such row, which fails the unit as a serialization failure, and the adapter
-- runs the unit again on the row as it is now (see csms.storage.postgres). Called only
-- then (never for an update that wrote its row), and volatile: it is not evaluated when
-- a statement is planned. SQLite has one writer at a time and needs none.
CREATE FUNCTION session_changed() RETURNS BIGINT LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'a session changed since its unit of work read it'
        USING ERRCODE = 'serialization_failure';
END
$$;
