-- Reading: where each person has read each room up to, how loudly each room may call them, and
-- which messages call a whole room (`@here`, `@room`).
--
-- A read cursor is an event id: "what I have not read" is the room's messages after it, the
-- same set on every device. Moving it writes a `read` event (`scope = 'user'`, `room_id` the
-- room, `user_id` the reader, `body` the new cursor), which goes to the reader's own streams
-- only, so their other tabs and devices follow, and one that was away learns it on replay.

CREATE TABLE reads (
    user_id INTEGER NOT NULL REFERENCES users (id),
    room_id INTEGER NOT NULL REFERENCES rooms (id),
    up_to   INTEGER NOT NULL DEFAULT 0,        -- read up to this event id; never moves back
    -- Which new messages call for the reader's attention: `all`, `mentions` (mentions and
    -- direct messages) or `none` (muted).
    notify  TEXT    NOT NULL DEFAULT 'mentions' CHECK (notify IN ('all', 'mentions', 'none')),
    PRIMARY KEY (user_id, room_id)
) WITHOUT ROWID;

-- Nothing before an account was made is unread to it: the newest event id at that moment.
-- Every account of an upgraded server starts with nothing unread.
ALTER TABLE users ADD COLUMN read_from INTEGER NOT NULL DEFAULT 0;
UPDATE users SET read_from = coalesce((SELECT max(id) FROM events), 0);

-- A message or edit whose text says `@here` or `@room`: it mentions everyone who can read the
-- room.
ALTER TABLE events ADD COLUMN mentions_room INTEGER NOT NULL DEFAULT 0 CHECK (mentions_room IN (0, 1));

-- A room's live messages and their authors, apart from everything else the room's range of
-- the log holds (edits, reactions, and its readers' `read` events, which outnumber messages in
-- a busy room): unread counts, the newest message and history read only these.
CREATE INDEX events_room_messages ON events (room_id, id, user_id) WHERE kind = 'message' AND body IS NOT NULL;
-- The messages and edits of a room that say `@here` or `@room`, for mention counts.
CREATE INDEX events_room_mentions ON events (room_id, id) WHERE mentions_room = 1;

-- Where each person has read each room, for people at the `sqlite3` prompt.
CREATE VIEW read_cursors AS
SELECT u.username, r.name AS room, x.up_to, x.notify
FROM reads AS x
JOIN users AS u ON u.id = x.user_id
JOIN rooms AS r ON r.id = x.room_id;
