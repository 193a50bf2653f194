-- Messages that change: edits, deletions, reactions and replies, each an event of its own.
--
-- `edit`, `delete` and `reaction` rows name the message they change in `message_id`; an edit's
-- `body` is the new text, a reaction's is `{"emoji":"👍","added":true}`. A message's row keeps
-- its text exactly as first sent; its current text is that of its newest edit.
--
-- Deleted means gone: deleting a message sets `body` to NULL on its row, its edits' and its
-- reactions' (the writer runs with `secure_delete` and checkpoints soon after, so no copy of
-- the text stays in the file or its WAL), and removes its reactions and mentions. Its `delete`
-- event stays.

ALTER TABLE events ADD COLUMN message_id INTEGER REFERENCES events (id);
-- A message that answers another (in the same room).
ALTER TABLE events ADD COLUMN reply_to INTEGER REFERENCES events (id);

-- A message's edits, newest last: its current text and when it was last edited.
CREATE INDEX events_edits ON events (message_id, id) WHERE kind = 'edit';

-- Who reacted to which message with what, in the order they did (`event_id`: the reaction
-- event that added it).
CREATE TABLE reactions (
    message_id INTEGER NOT NULL REFERENCES events (id),
    emoji      TEXT    NOT NULL,
    user_id    INTEGER NOT NULL REFERENCES users (id),
    event_id   INTEGER NOT NULL,
    PRIMARY KEY (message_id, emoji, user_id)
) WITHOUT ROWID;

-- Whom each version of a message mentions: `event_id` is the message's own event or one of its
-- edits; a message mentions whom its newest version does.
CREATE TABLE mentions (
    event_id INTEGER NOT NULL REFERENCES events (id),
    user_id  INTEGER NOT NULL REFERENCES users (id),
    PRIMARY KEY (event_id, user_id)
) WITHOUT ROWID;
CREATE INDEX mentions_user ON mentions (user_id, event_id);

DROP VIEW messages;
CREATE VIEW messages AS
SELECT e.id, r.name AS room, u.username,
       coalesce((SELECT x.body FROM events AS x WHERE x.kind = 'edit' AND x.message_id = e.id ORDER BY x.id DESC LIMIT 1),
                e.body) AS content,
       e.created_at,
       (SELECT x.created_at FROM events AS x WHERE x.kind = 'edit' AND x.message_id = e.id ORDER BY x.id DESC LIMIT 1)
           AS edited_at,
       e.reply_to
FROM events AS e
JOIN rooms AS r ON r.id = e.room_id
JOIN users AS u ON u.id = e.user_id
WHERE e.kind = 'message' AND e.body IS NOT NULL;

CREATE VIEW message_edits AS
SELECT x.message_id, x.body AS content, x.created_at AS edited_at
FROM events AS x
WHERE x.kind = 'edit' AND x.body IS NOT NULL;
