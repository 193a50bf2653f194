-- Private rooms and direct messages. A room has a kind (public rooms are read by every account;
-- private and direct ones by their members), a topic and an archived flag. Who is a member, and
-- from which event to which, is in `room_access`: one row per stint, so that a stream replays
-- exactly what its user could read at each point of the log.

ALTER TABLE rooms ADD COLUMN kind TEXT NOT NULL DEFAULT 'public' CHECK (kind IN ('public', 'private', 'direct'));
ALTER TABLE rooms ADD COLUMN topic TEXT;
ALTER TABLE rooms ADD COLUMN archived INTEGER NOT NULL DEFAULT 0 CHECK (archived IN (0, 1));
-- A direct room is the room of exactly its set of people: their user ids, ascending, joined by
-- commas. One room per set.
ALTER TABLE rooms ADD COLUMN direct_key TEXT;
CREATE UNIQUE INDEX rooms_direct_key ON rooms (direct_key) WHERE direct_key IS NOT NULL;

-- A `member` event's subject: who joined or left (the event's `user_id` is who did it).
ALTER TABLE events ADD COLUMN subject_id INTEGER REFERENCES users (id);

CREATE TABLE room_access (
    room_id  INTEGER NOT NULL REFERENCES rooms (id),
    user_id  INTEGER NOT NULL REFERENCES users (id),
    from_id  INTEGER NOT NULL,   -- the first event of the room they see: the one that let them in
    until_id INTEGER,            -- the last: the one that removed them; NULL while a member
    PRIMARY KEY (room_id, user_id, from_id)
) WITHOUT ROWID;

-- A user's stream asks "was this user in this room at this event?" for each members-only row.
CREATE INDEX room_access_user ON room_access (user_id, room_id, from_id);
-- A room's current members; one current stint per member.
CREATE UNIQUE INDEX room_access_current ON room_access (room_id, user_id) WHERE until_id IS NULL;

CREATE VIEW memberships AS
SELECT r.name AS room, u.username, e.created_at AS joined_at
FROM room_access AS a
JOIN rooms AS r ON r.id = a.room_id
JOIN users AS u ON u.id = a.user_id
JOIN events AS e ON e.id = a.from_id
WHERE a.until_id IS NULL;
