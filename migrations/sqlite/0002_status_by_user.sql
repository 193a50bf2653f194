-- A user's newest status, for the member list and for presence at start-up, without scanning
-- every status change.
CREATE INDEX events_status_user_id ON events (user_id, id) WHERE kind = 'status';
