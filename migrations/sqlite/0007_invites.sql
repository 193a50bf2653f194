-- Invitations. Past the first account (the admin), a server with `--signup invite` (the
-- default) makes an account only for someone who brings a live invite code: an admin makes one
-- (or the operator, `chat-server admin invite`), good for a number of accounts until it
-- expires or is revoked. Each account made with it takes one use, in the same transaction.
--
-- The code is kept as it was handed out, not hashed (unlike session tokens): admins list live
-- invites to copy their links again and revoke them by code, and a code only lets someone make
-- a new member account, a bounded number of times before it expires. The file is readable by
-- its owner only.
CREATE TABLE invites (
    code       TEXT    PRIMARY KEY,          -- 128 random bits, URL-safe base64
    uses       INTEGER NOT NULL CHECK (uses >= 1),             -- accounts it was made for
    uses_left  INTEGER NOT NULL CHECK (uses_left BETWEEN 0 AND uses),
    expires_at TEXT    NOT NULL,             -- no account is made with it from then on
    created_by INTEGER REFERENCES users (id), -- NULL: made by the operator's command line
    created_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    revoked    INTEGER NOT NULL DEFAULT 0 CHECK (revoked IN (0, 1))
) WITHOUT ROWID;

-- The invite each account joined with, if any: who brought whom, at the sqlite3 prompt.
ALTER TABLE users ADD COLUMN invite TEXT REFERENCES invites (code);
