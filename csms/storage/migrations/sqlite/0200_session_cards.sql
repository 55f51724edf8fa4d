-- The card a session was charged on, as it was linked when the session started: the driver
-- who pays for it, and the salt and commitment of the link. A card unlinked (reported lost)
-- or linked to another driver before the session is settled leaves its payer as it was;
-- only the sessions that start afterwards follow the new link.
CREATE TABLE session_cards (
    session_id  INTEGER PRIMARY KEY REFERENCES sessions(id),
    tag         TEXT NOT NULL,
    driver      TEXT NOT NULL,
    salt        TEXT NOT NULL,
    commitment  TEXT NOT NULL
);
CREATE INDEX session_cards_driver ON session_cards (driver);
