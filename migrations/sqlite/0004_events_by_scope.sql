-- The log addressed by scope. `events` is rebuilt once, without the CHECKs that froze its kinds
-- (a new kind of event is now a new `kind` value, not a table rebuild), and with `scope`: who
-- may see the event. Every row keeps its id, and the AUTOINCREMENT high-water mark is carried
-- over, so no id is ever handed out twice, even if the newest rows had been deleted.

-- Views name `events`; they are made again below.
DROP VIEW messages;
DROP VIEW status_changes;

CREATE TABLE events_by_scope (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    kind       TEXT    NOT NULL,                -- message, status, room, ... (DESIGN.md lists them)
    -- Who may see it: 'room' (whoever can read room_id), 'user' (user_id alone, on every
    -- device) or 'everyone'. The writer publishes to it; streams replay by it.
    scope      TEXT    NOT NULL,
    room_id    INTEGER REFERENCES rooms (id),   -- the room it happened in or is about, if any
    user_id    INTEGER NOT NULL REFERENCES users (id),   -- who did it
    body       TEXT,                            -- a message's content exactly as sent; a status; a room's topic
    client_id  TEXT,                            -- a message's id made by its client (a UUID), for idempotent sends
    created_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

INSERT INTO events_by_scope (id, kind, scope, room_id, user_id, body, client_id, created_at)
SELECT id, kind, CASE kind WHEN 'message' THEN 'room' ELSE 'everyone' END, room_id, user_id, body, client_id, created_at
FROM events ORDER BY id;

-- The copy moved the new table's counter only as far as the highest id still present.
DELETE FROM sqlite_sequence WHERE name = 'events_by_scope';
INSERT INTO sqlite_sequence (name, seq)
SELECT 'events_by_scope', max(
    coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0),
    coalesce((SELECT max(id) FROM events_by_scope), 0));

DROP TABLE events;
ALTER TABLE events_by_scope RENAME TO events;

-- History and a room's stream read (room_id, id) ranges.
CREATE INDEX events_room_id_id ON events (room_id, id);
-- A room's stream also carries what everyone sees.
CREATE INDEX events_everyone_id ON events (id) WHERE scope = 'everyone';
-- A user's stream also carries what is theirs alone.
CREATE INDEX events_user_scope_id ON events (user_id, id) WHERE scope = 'user';
-- A user's newest status, for the member list and for presence at start-up.
CREATE INDEX events_status_user_id ON events (user_id, id) WHERE kind = 'status';
-- A message's client_id is unique per user.
CREATE UNIQUE INDEX events_user_client_id ON events (user_id, client_id) WHERE client_id IS NOT NULL;

CREATE VIEW messages AS
SELECT e.id, r.name AS room, u.username, e.body AS content, e.created_at
FROM events AS e
JOIN rooms AS r ON r.id = e.room_id
JOIN users AS u ON u.id = e.user_id
WHERE e.kind = 'message';

CREATE VIEW status_changes AS
SELECT e.id, u.username, e.body AS status, e.created_at
FROM events AS e
JOIN users AS u ON u.id = e.user_id
WHERE e.kind = 'status';

-- The status a user chose, which presence keeps: `online` (shown online while a stream is
-- open, offline after), `away` (away while connected), or `offline` ("appear offline", which
-- sticks until they change it). Taken from their newest chosen-looking status so far.
ALTER TABLE users ADD COLUMN status_choice TEXT NOT NULL DEFAULT 'online';

UPDATE users SET status_choice = 'away'
WHERE (SELECT e.body FROM events AS e WHERE e.kind = 'status' AND e.user_id = users.id ORDER BY e.id DESC LIMIT 1) = 'away';
