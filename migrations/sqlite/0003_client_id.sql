-- A message may carry an id its client made up (a UUID), so that a retried or double-clicked
-- send is stored once: the second post finds the first. Unique per user; NULL when not sent.
ALTER TABLE events ADD COLUMN client_id TEXT;

CREATE UNIQUE INDEX events_user_client_id ON events (user_id, client_id) WHERE client_id IS NOT NULL;
