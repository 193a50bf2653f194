-- Retention (`--retain-days`): a message older than the server keeps is deleted as its author
-- would delete it (its text gone from the file, its `delete` event kept). The log before
-- `kept_from`, one past the newest message so deleted, is no longer whole: a stream resuming
-- from a cursor before it is told to reload its history (`reset`) instead of replaying a past
-- that has lost its messages.
CREATE TABLE retention (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    kept_from INTEGER NOT NULL
);
