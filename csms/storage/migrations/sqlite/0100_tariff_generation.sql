-- A counter that every change to tariffs raises, whoever makes it (this build, another
-- process, an operator's own SQL): triggers. The SQLite adapter keeps the tariffs its
-- write transactions looked up (every 2.0.1 TransactionEvent asks for its running cost,
-- ~11 us a lookup on the writer's turn) and reads the counter once a transaction: when it
-- moved, what was kept is dropped. PostgreSQL has the same table and triggers (one schema
-- for both), and reads its tariffs each time.
CREATE TABLE tariff_generation (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    n  INTEGER NOT NULL
);
INSERT INTO tariff_generation (id, n) VALUES (1, 0);
CREATE TRIGGER tariffs_inserted AFTER INSERT ON tariffs
BEGIN
    UPDATE tariff_generation SET n = n + 1 WHERE id = 1;
END;
CREATE TRIGGER tariffs_updated AFTER UPDATE ON tariffs
BEGIN
    UPDATE tariff_generation SET n = n + 1 WHERE id = 1;
END;
CREATE TRIGGER tariffs_deleted AFTER DELETE ON tariffs
BEGIN
    UPDATE tariff_generation SET n = n + 1 WHERE id = 1;
END;
