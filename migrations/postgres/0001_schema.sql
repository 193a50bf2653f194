-- The chat's whole state on PostgreSQL, for several nodes sharing one log: the same tables,
-- columns and views as `migrations/sqlite/` after its twelve migrations (what each column means
-- is said there, and again here where Postgres says it differently), plus what nodes share
-- (`session_ends`, `nodes`, `presence_streams`). A schema change is a new file in both folders.
--
-- What differs from SQLite, and why:
-- - Timestamps are `timestamptz`. The views render them as SQLite stores them, ISO 8601 UTC
--   with milliseconds ('2026-11-21T09:30:00.123Z', `chat_time` below), so that a plain SELECT
--   at the psql prompt reads as it does at the sqlite3 prompt.
-- - Ids are `bigint` identities and flags are `boolean`.
-- - `events.id` is handed out under one lock for the whole cluster (see `events` below): ids
--   are in commit order across nodes, which is what lets a browser resume from its last id on
--   any node.
-- - Search is a `tsvector` with a GIN index in place of FTS5 (`message_search` below).
--
-- The database must be UTF-8 with a real locale's character classes (`initdb -E UTF8
-- --locale=C.UTF-8`, or `en_US.UTF-8`; not `C`): under `C`, search folds the case of ASCII
-- letters alone, and `σοφια` does not find `ΣΟΦΙΑ`.

-- `unaccent` ships with PostgreSQL (Debian's `postgresql-15` has it) and is a trusted
-- extension: the database's owner may create it without being a superuser.
CREATE EXTENSION IF NOT EXISTS unaccent;

-- A time as the views show it: '2026-11-21T09:30:00.123Z'.
CREATE FUNCTION chat_time(at timestamptz) RETURNS text
    LANGUAGE sql STABLE STRICT PARALLEL SAFE
    RETURN to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"');

CREATE TABLE invites (
    code       text        PRIMARY KEY,      -- 128 random bits, URL-safe base64; kept as handed out (see sqlite/0007)
    uses       integer     NOT NULL CHECK (uses >= 1),             -- accounts it was made for
    uses_left  integer     NOT NULL CHECK (uses_left BETWEEN 0 AND uses),
    expires_at timestamptz NOT NULL,         -- no account is made with it from then on
    created_by bigint,                       -- NULL: made by the operator's command line (REFERENCES users, below)
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked    boolean     NOT NULL DEFAULT false
);

CREATE TABLE users (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Unique whatever its case (`users_username` below), as SQLite's COLLATE NOCASE: names are
    -- ASCII (the server checks), where lower() and NOCASE agree. An expression index rather than
    -- `citext`, which is an extension only a superuser may create.
    username      text        NOT NULL,
    password_hash text        NOT NULL,      -- argon2id, PHC string format
    created_at    timestamptz NOT NULL DEFAULT now(),
    -- The status the user chose, which presence keeps: `online`, `away` (away while connected)
    -- or `offline` ("appear offline"). It is also what SCALE-OUT.md §3.6 calls `chose_away`
    -- (`status_choice = 'away'`), so nodes read it from here instead of memory.
    status_choice text        NOT NULL DEFAULT 'online' CHECK (status_choice IN ('online', 'away', 'offline')),
    role          text        NOT NULL DEFAULT 'member' CHECK (role IN ('admin', 'member')),
    active        boolean     NOT NULL DEFAULT true,
    -- What the name looks like, to refuse new look-alikes (`AIice` beside `Alice`): I, l and 1
    -- read as one letter, and so do O, o and 0; case does not count. STORED: Postgres 15 has no
    -- virtual generated columns.
    skeleton      text        GENERATED ALWAYS AS (
        lower(replace(replace(replace(replace(username, 'I', 'l'), '1', 'l'), 'O', 'o'), '0', 'o'))
    ) STORED,
    invite        text        REFERENCES invites (code),   -- the invite the account joined with, if any
    -- Nothing before an account was made is unread to it: the newest event id at that moment.
    read_from     bigint      NOT NULL DEFAULT 0
);

CREATE UNIQUE INDEX users_username ON users (lower(username));
CREATE INDEX users_skeleton ON users (skeleton);

ALTER TABLE invites ADD FOREIGN KEY (created_by) REFERENCES users (id);

CREATE TABLE sessions (
    token_hash   bytea       PRIMARY KEY,    -- SHA-256 of the bearer token; the token itself is never stored
    user_id      bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    -- The id a user names a session by in `GET /api/me/sessions` (never the token): 8 random
    -- bytes in hex, as SQLite's writer makes it (`gen_random_uuid` draws from a strong source).
    id           text        NOT NULL DEFAULT left(replace(gen_random_uuid()::text, '-', ''), 16),
    address      text,                       -- where it was last used from, as far as the client said
    user_agent   text
);

CREATE INDEX sessions_user_id ON sessions (user_id);
CREATE UNIQUE INDEX sessions_id ON sessions (id);

CREATE TABLE rooms (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       text        NOT NULL UNIQUE,  -- [a-z0-9][a-z0-9-]{0,31}, checked by the server
    created_at timestamptz NOT NULL DEFAULT now(),
    created_by bigint      REFERENCES users (id),   -- NULL for rooms the server made itself
    -- Public rooms are read by every account; private and direct ones by their members.
    kind       text        NOT NULL DEFAULT 'public' CHECK (kind IN ('public', 'private', 'direct')),
    topic      text,
    archived   boolean     NOT NULL DEFAULT false,
    -- A direct room is the room of exactly its set of people: their user ids, ascending, joined
    -- by commas. One room per set.
    direct_key text
);

CREATE UNIQUE INDEX rooms_direct_key ON rooms (direct_key) WHERE direct_key IS NOT NULL;

INSERT INTO rooms (name) VALUES ('general');

-- The event log. `id` is the SSE `id:` a browser resumes from, on whichever node it reaches.
--
-- Ids must be in commit order: a reader that has seen id N must never later find a new id below
-- N, or a stream resuming from N skips it for good. A plain identity does not promise that:
-- two nodes draw 10 and 11, 11 commits first, a reader moves past 10 (SCALE-OUT.md §2.1: 16
-- writers, a third of the events skipped). So ids are drawn by one appender at a time: every
-- transaction that inserts events holds `pg_advisory_xact_lock(7316512000000000001)` (the
-- writer takes it first in each batch; `events_append_lock` below takes it for any other
-- INSERT, psql's included). Postgres makes a commit visible before it releases the
-- transaction's locks, so the next appender draws N+1 only once N is visible.
--
-- - `CACHE 1` is load-bearing: with a cache, each session draws from ids it set aside earlier,
--   outside the lock. The sequence is `events_id_seq`; the newest id ever handed out (what
--   SQLite keeps in `sqlite_sequence`) is `CASE WHEN is_called THEN last_value ELSE 0 END`.
-- - `GENERATED ALWAYS` refuses an id given by hand; `chat-server import` says
--   `OVERRIDING SYSTEM VALUE` and then moves the sequence past what it wrote.
-- - `created_at` is `clock_timestamp()`, taken when the row is made, after the lock, so that it
--   follows id order (`now()` is the transaction's start, before the wait for the lock).
CREATE TABLE events (
    id            bigint      GENERATED ALWAYS AS IDENTITY (CACHE 1) PRIMARY KEY,
    kind          text        NOT NULL,      -- message, status, room, ... (DESIGN.md lists them)
    -- Who may see it: 'room' (whoever can read room_id), 'user' (user_id alone, on every
    -- device) or 'everyone'.
    scope         text        NOT NULL CHECK (scope IN ('room', 'user', 'everyone')),
    room_id       bigint      REFERENCES rooms (id),    -- the room it happened in or is about, if any
    user_id       bigint      NOT NULL REFERENCES users (id),   -- who did it
    -- A message's content exactly as sent; a status; a room's topic; an edit's new text; a
    -- reaction's `{"emoji":"👍","added":true}`; a read cursor. NULL once its message is deleted.
    body          text,
    client_id     text,                      -- a message's id made by its client (a UUID), for idempotent sends
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    subject_id    bigint      REFERENCES users (id),    -- a `member` event's subject: who joined or left
    message_id    bigint      REFERENCES events (id),   -- the message an edit, deletion or reaction changes
    reply_to      bigint      REFERENCES events (id),   -- the message this one answers (same room)
    mentions_room boolean     NOT NULL DEFAULT false    -- its text says `@here` or `@room`
);

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
-- A message's edits, newest last: its current text and when it was last edited.
CREATE INDEX events_edits ON events (message_id, id) WHERE kind = 'edit';
-- A room's live messages and their authors, apart from the edits, reactions and read events
-- that outnumber them: unread counts, the newest message and history read only these.
CREATE INDEX events_room_messages ON events (room_id, id, user_id) WHERE kind = 'message' AND body IS NOT NULL;
-- The messages and edits of a room that say `@here` or `@room`, for mention counts.
CREATE INDEX events_room_mentions ON events (room_id, id) WHERE mentions_room;
-- A message's reactions in the log, by message: erasing a deleted message's text finds them here.
CREATE INDEX events_reactions ON events (message_id, id) WHERE kind = 'reaction';

-- One appender at a time, for every writer. FOR EACH STATEMENT, because a statement trigger
-- fires before the first row is formed and so before the identity draws its id; a row trigger
-- fires after (measured: 54 and 66 events skipped with one, SCALE-OUT.md §2.2a). ENABLE ALWAYS:
-- it fires under `session_replication_role = replica` too. The lock is re-entrant within a
-- transaction, so a writer that took it first pays nothing more. The key is
-- `eventlog::postgres::APPEND_LOCK` in the server.
CREATE FUNCTION chat_append_lock() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN PERFORM pg_advisory_xact_lock(7316512000000000001); RETURN NULL; END $$;
CREATE TRIGGER events_append_lock BEFORE INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION chat_append_lock();
ALTER TABLE events ENABLE ALWAYS TRIGGER events_append_lock;

-- Who is a member of which room, from which event to which: one row per stint, so that a
-- stream replays exactly what its user could read at each point of the log.
CREATE TABLE room_access (
    room_id  bigint NOT NULL REFERENCES rooms (id),
    user_id  bigint NOT NULL REFERENCES users (id),
    from_id  bigint NOT NULL,   -- the first event of the room they see: the one that let them in
    until_id bigint,            -- the last: the one that removed them; NULL while a member
    PRIMARY KEY (room_id, user_id, from_id)
);

-- A user's stream asks "was this user in this room at this event?" for each members-only row.
CREATE INDEX room_access_user ON room_access (user_id, room_id, from_id);
-- A room's current members; one current stint per member.
CREATE UNIQUE INDEX room_access_current ON room_access (room_id, user_id) WHERE until_id IS NULL;

-- Who reacted to which message with what, in the order they did (`event_id`: the reaction
-- event that added it).
CREATE TABLE reactions (
    message_id bigint NOT NULL REFERENCES events (id),
    emoji      text   NOT NULL,
    user_id    bigint NOT NULL REFERENCES users (id),
    event_id   bigint NOT NULL,
    PRIMARY KEY (message_id, emoji, user_id)
);

-- Whom each version of a message mentions: `event_id` is the message's own event or one of its
-- edits; a message mentions whom its newest version does.
CREATE TABLE mentions (
    event_id bigint NOT NULL REFERENCES events (id),
    user_id  bigint NOT NULL REFERENCES users (id),
    PRIMARY KEY (event_id, user_id)
);
CREATE INDEX mentions_user ON mentions (user_id, event_id);

-- Where each person has read each room up to (an event id, never moving back), and how loudly
-- each room may call them: `all`, `mentions` (mentions and direct messages) or `none`.
CREATE TABLE reads (
    user_id bigint NOT NULL REFERENCES users (id),
    room_id bigint NOT NULL REFERENCES rooms (id),
    up_to   bigint NOT NULL DEFAULT 0,
    notify  text   NOT NULL DEFAULT 'mentions' CHECK (notify IN ('all', 'mentions', 'none')),
    PRIMARY KEY (user_id, room_id)
);

-- Retention (`--retain-days`): the log before `kept_from` is no longer whole, and a stream
-- resuming from before it is told to reload (`reset`).
CREATE TABLE retention (
    id        integer PRIMARY KEY CHECK (id = 1),
    kept_from bigint  NOT NULL
);

-- Backups: `chat-server backup` records each copy it made and checked, so the running server
-- can tell the operator's monitoring how old the newest one is
-- (`chat_last_backup_timestamp_seconds`). The newest hundred are kept.
CREATE TABLE backups (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    finished_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    bytes       bigint      NOT NULL,  -- the size of the copy
    path        text        NOT NULL   -- where it was written, as the operator named it
);

-- Full-text search over what messages say now: one row per live message, `text` its current
-- text (the newest edit's, else the message's own), kept in step by the writer in the same
-- transaction as the post, the edit or the deletion, as on SQLite.
--
-- - `chat_search` reads words as SQLite's `unicode61 remove_diacritics 2` does: runs of letters
--   and digits in any script, without regard to case or accents (`cafe` finds `Café`), and no
--   stemming or stop words (`simple`). Prefixes (`dep:*`) need no extra index: GIN matches them
--   from the same one.
-- - `text` is a copy, for snippets (`ts_headline`).
-- - Deleted means gone, as far as Postgres allows: the writer deletes the row and sets the
--   events' `body` to NULL, and VACUUM (autovacuum soon after) frees the dead row versions;
--   until then, and in WAL not yet recycled, the old text is still on disk. SQLite's
--   `secure_delete` has no Postgres equivalent.
CREATE TEXT SEARCH CONFIGURATION chat_search (COPY = simple);
ALTER TEXT SEARCH CONFIGURATION chat_search
    ALTER MAPPING FOR word, numword, hword, numhword, hword_part, hword_numpart WITH unaccent, simple;

CREATE TABLE message_search (
    message_id bigint   PRIMARY KEY REFERENCES events (id),   -- SQLite's rowid
    text       text     NOT NULL,
    words      tsvector NOT NULL GENERATED ALWAYS AS (to_tsvector('chat_search', text)) STORED
);
CREATE INDEX message_search_words ON message_search USING gin (words);

-- What nodes share. Each server process is a node with a fresh `node_id`, heartbeating every
-- few seconds; one whose heartbeat has lapsed is dead, and any live node's writer clears its
-- rows (SCALE-OUT.md §3.6).
CREATE TABLE nodes (
    node_id      uuid        PRIMARY KEY,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);

-- How many streams each user has open on each node: online while any live node has a row.
CREATE TABLE presence_streams (
    node_id uuid    NOT NULL REFERENCES nodes (node_id) ON DELETE CASCADE,
    user_id bigint  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    streams integer NOT NULL CHECK (streams > 0),
    PRIMARY KEY (node_id, user_id)
);
-- "Does any live node still have a stream of this user?"
CREATE INDEX presence_streams_user ON presence_streams (user_id);

-- Sessions ended (signed out, revoked, deactivated), for the other nodes: each node's tailer
-- reads `seq > ` its cursor and ends the streams and cached sessions of `token_hash`, as the
-- node that ended it did (SCALE-OUT.md §3.5). Kept for the session-idle period, then pruned.
-- A cursor over `seq` has the same need as one over `events.id`, so it is drawn the same way:
-- `CACHE 1` and the append lock, whoever inserts.
CREATE TABLE session_ends (
    seq        bigint      GENERATED ALWAYS AS IDENTITY (CACHE 1) PRIMARY KEY,
    token_hash bytea       NOT NULL,
    at         timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TRIGGER session_ends_append_lock BEFORE INSERT ON session_ends
    FOR EACH STATEMENT EXECUTE FUNCTION chat_append_lock();
ALTER TABLE session_ends ENABLE ALWAYS TRIGGER session_ends_append_lock;

-- For people at the psql prompt, as at the sqlite3 one.

CREATE VIEW messages AS
SELECT e.id, r.name AS room, u.username,
       coalesce((SELECT x.body FROM events AS x WHERE x.kind = 'edit' AND x.message_id = e.id ORDER BY x.id DESC LIMIT 1),
                e.body) AS content,
       chat_time(e.created_at) AS created_at,
       (SELECT chat_time(x.created_at) FROM events AS x WHERE x.kind = 'edit' AND x.message_id = e.id
        ORDER BY x.id DESC LIMIT 1) AS edited_at,
       e.reply_to
FROM events AS e
JOIN rooms AS r ON r.id = e.room_id
JOIN users AS u ON u.id = e.user_id
WHERE e.kind = 'message' AND e.body IS NOT NULL;

CREATE VIEW message_edits AS
SELECT x.message_id, x.body AS content, chat_time(x.created_at) AS edited_at
FROM events AS x
WHERE x.kind = 'edit' AND x.body IS NOT NULL;

CREATE VIEW status_changes AS
SELECT e.id, u.username, e.body AS status, chat_time(e.created_at) AS created_at
FROM events AS e
JOIN users AS u ON u.id = e.user_id
WHERE e.kind = 'status';

CREATE VIEW memberships AS
SELECT r.name AS room, u.username, chat_time(e.created_at) AS joined_at
FROM room_access AS a
JOIN rooms AS r ON r.id = a.room_id
JOIN users AS u ON u.id = a.user_id
JOIN events AS e ON e.id = a.from_id
WHERE a.until_id IS NULL;

CREATE VIEW read_cursors AS
SELECT u.username, r.name AS room, x.up_to, x.notify
FROM reads AS x
JOIN users AS u ON u.id = x.user_id
JOIN rooms AS r ON r.id = x.room_id;
