-- The chat's whole state. Everything anyone said or did is a row in `events`; the other tables
-- say who people are, how they are signed in, and which rooms exist.
-- Timestamps are ISO 8601 UTC text with milliseconds ('2026-11-21T09:30:00.123Z') so that a
-- plain SELECT at the sqlite3 prompt reads well and sorts correctly.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    username      TEXT    NOT NULL UNIQUE COLLATE NOCASE,
    password_hash TEXT    NOT NULL,          -- argon2id, PHC string format
    created_at    TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE sessions (
    token_hash   BLOB    PRIMARY KEY,        -- SHA-256 of the bearer token; the token itself is never stored
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    last_seen_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) WITHOUT ROWID;

CREATE INDEX sessions_user_id ON sessions (user_id);

CREATE TABLE rooms (
    id         INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL UNIQUE,      -- [a-z0-9][a-z0-9-]{0,31}, checked by the server
    created_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    created_by INTEGER REFERENCES users (id) -- NULL for rooms the server made itself
);

INSERT INTO rooms (name) VALUES ('general');

-- The event log. `id` is the SSE `id:` a browser resumes from; AUTOINCREMENT guarantees an id is
-- never handed out twice, even after the newest rows are deleted.
CREATE TABLE events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    kind       TEXT    NOT NULL CHECK (kind IN ('message', 'status')),
    room_id    INTEGER REFERENCES rooms (id),   -- NULL for status changes, which every room shows
    user_id    INTEGER NOT NULL REFERENCES users (id),
    body       TEXT    NOT NULL,                -- a message's content exactly as sent, or the new status
    created_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    CHECK ((kind = 'message') = (room_id IS NOT NULL)),
    CHECK (kind <> 'status' OR body IN ('online', 'away', 'offline'))
);

-- A room's stream reads `room_id = ? AND id > ?` and `room_id IS NULL AND id > ?` in id order.
CREATE INDEX events_room_id_id ON events (room_id, id);

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
