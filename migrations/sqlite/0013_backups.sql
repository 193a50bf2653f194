-- Backups: `chat-server backup` records each copy it made and checked, so the running server
-- can tell the operator's monitoring how old the newest one is
-- (`chat_last_backup_timestamp_seconds`). The newest hundred are kept.
CREATE TABLE backups (
    id          INTEGER PRIMARY KEY,
    finished_at TEXT    NOT NULL,  -- ISO 8601 UTC with milliseconds, as every time here
    bytes       INTEGER NOT NULL,  -- the size of the copy
    path        TEXT    NOT NULL   -- where it was written, as the operator named it
);
