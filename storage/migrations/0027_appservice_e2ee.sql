-- Application services with encryption (MSC2409 to-device messages, MSC3202 device lists):
-- the to_device and device_lists stream positions up to which a service has been sent what
-- concerns it, moved in the same database transaction as the transaction that carries it.
-- -1 until the service's first start with this version, which sets the current positions.
ALTER TABLE appservice_positions ADD COLUMN to_device_pos BIGINT NOT NULL DEFAULT -1;
ALTER TABLE appservice_positions ADD COLUMN device_lists_pos BIGINT NOT NULL DEFAULT -1;

-- Services read the to-device messages of every device in stream order.
CREATE INDEX to_device_messages_stream ON to_device_messages (stream_pos);
