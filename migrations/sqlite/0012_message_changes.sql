-- A message's reactions in the log, by message: erasing a deleted message's text finds them
-- here instead of reading every event (a deletion read the whole log: 0.3 s on a million events,
-- with the writer waiting).
CREATE INDEX events_reactions ON events (message_id, id) WHERE kind = 'reaction';
