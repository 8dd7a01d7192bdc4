-- pushers.device_id is the device whose access token set the pusher up: the pusher goes when
-- that device is logged out or deleted (as Synapse removes pushers with their access token).
-- '' for pushers set up before this column; they go when all of the user's devices go.
ALTER TABLE pushers ADD COLUMN device_id TEXT NOT NULL DEFAULT '';
