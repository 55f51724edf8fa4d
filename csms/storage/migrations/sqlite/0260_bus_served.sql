-- The request ids of the commands each node took from the command bus (csms.bus.commands),
-- kept until the command's wait window has passed: a node that restarts still refuses a
-- captured command it ran before (with the ids in its memory only, a command published
-- again after the restart reached the station a second time). UTC times, ISO text.
CREATE TABLE bus_served (
    node_id     TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    until       TEXT NOT NULL,
    PRIMARY KEY (node_id, request_id)
);
CREATE INDEX bus_served_until ON bus_served (until);
