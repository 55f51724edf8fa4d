-- A tag's status at a session's start, not only now (csms.service.core): a driver who has
-- the operator block a card after an offline session started on it must still pay for that
-- session, and a thief's session started while the card was blocked, sent after it was
-- unblocked, must not be charged to its driver. ``status_since``: when the tag's status
-- took its value (NULL: it has had it since the tag was registered); each earlier status
-- is kept with the times it held.
ALTER TABLE id_tags ADD COLUMN status_since TEXT;

CREATE TABLE id_tag_statuses (
    tag     TEXT NOT NULL,
    status  TEXT NOT NULL,
    since   TEXT,
    until   TEXT NOT NULL
);
CREATE INDEX id_tag_statuses_tag ON id_tag_statuses (tag, until);
