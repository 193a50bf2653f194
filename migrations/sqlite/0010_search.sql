-- Full-text search over what messages say now. `message_search` holds one row per live message,
-- its rowid the message's event id and `text` its current text: the newest edit's, else the
-- message's own. The writer keeps it in step in the same transaction as the post, the edit or
-- the deletion (there are no triggers: every write goes through the one writer, and a trigger
-- on `events` would make an older sqlite3 at the prompt fail on the table below).
--
-- - `unicode61 remove_diacritics 2`: words are runs of letters and digits in any script,
--   matched without regard to case or accents (`cafe` finds `Café`).
-- - `prefix = '3'`: the first three characters of every word are indexed as well, so that a
--   search for `dep*` reads one list instead of merging every word that starts so.
-- - `columnsize = 0`: results come newest first, never by rank, so the sizes that ranking
--   reads are not kept.
-- - The text is a copy (the index reads it for snippets); U+0002 and U+0003, which mark the
--   matches in a snippet, are stored as spaces, so that no stored text can forge a mark. Both
--   are control characters, which the tokenizer takes for spaces anyway.
--
-- Deleted means gone: `secure-delete` makes a deletion remove the message's words from the
-- index itself, not only mark them deleted until a merge (with `PRAGMA secure_delete` and the
-- checkpoint after an erasure, no copy stays in the file). Once something has been deleted, an
-- sqlite3 older than 3.44 cannot read `message_search` ("invalid fts5 file format"); every
-- other table and view reads as before.
CREATE VIRTUAL TABLE message_search USING fts5 (
    text,
    tokenize = 'unicode61 remove_diacritics 2',
    prefix = '3',
    columnsize = 0
);
INSERT INTO message_search (message_search, rank) VALUES ('secure-delete', 1);

INSERT INTO message_search (rowid, text)
SELECT e.id,
       replace(replace(coalesce((SELECT x.body FROM events AS x WHERE x.kind = 'edit' AND x.message_id = e.id
                                 ORDER BY x.id DESC LIMIT 1),
                                e.body), char(2), ' '), char(3), ' ')
FROM events AS e
WHERE e.kind = 'message' AND e.body IS NOT NULL
ORDER BY e.id;
