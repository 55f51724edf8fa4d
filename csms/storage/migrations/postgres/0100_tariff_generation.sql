-- A counter that every change to tariffs raises, whoever makes it: a trigger (see the
-- SQLite migration of the same number, whose adapter keeps the tariffs it looked up and
-- reads this once a transaction). PostgreSQL reads its tariffs each time; the table and
-- the trigger keep one schema for both engines.
CREATE TABLE tariff_generation (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    n  BIGINT NOT NULL
);
INSERT INTO tariff_generation (id, n) VALUES (1, 0);
CREATE FUNCTION tariff_generation_raise() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE tariff_generation SET n = n + 1 WHERE id = 1;
    RETURN NULL;
END
$$;
CREATE TRIGGER tariffs_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON tariffs
    FOR EACH STATEMENT EXECUTE FUNCTION tariff_generation_raise();
