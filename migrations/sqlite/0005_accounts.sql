-- Accounts people can manage: a role and an active flag per user, and sessions each user can
-- see and end, with where they were last used.

ALTER TABLE users ADD COLUMN role TEXT NOT NULL DEFAULT 'member' CHECK (role IN ('admin', 'member'));
ALTER TABLE users ADD COLUMN active INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1));

-- A server that had no roles has no admin: its first account becomes it.
UPDATE users SET role = 'admin' WHERE id = (SELECT min(id) FROM users);

-- The id a user names a session by in `GET /api/me/sessions` (never the token), and where it
-- was last used from: the client's address and its User-Agent, as far as they were sent.
ALTER TABLE sessions ADD COLUMN id TEXT NOT NULL DEFAULT '';
UPDATE sessions SET id = lower(hex(randomblob(8)));
CREATE UNIQUE INDEX sessions_id ON sessions (id);
ALTER TABLE sessions ADD COLUMN address TEXT;
ALTER TABLE sessions ADD COLUMN user_agent TEXT;

-- What a name looks like, to refuse new look-alikes of a taken name (`AIice` beside `Alice`):
-- capital I, l and 1 read as one letter, and so do O, o and 0; case does not count. Names that
-- were taken before may share one; new accounts may not.
ALTER TABLE users ADD COLUMN skeleton TEXT GENERATED ALWAYS AS (
    lower(replace(replace(replace(replace(username, 'I', 'l'), '1', 'l'), 'O', 'o'), '0', 'o'))
) VIRTUAL;
CREATE INDEX users_skeleton ON users (skeleton);
