-- Application services: what each registered service has been sent.
--
-- appservice_positions is, per service (its registration id), the room event stream
-- position up to which every event has been looked at (and, if the service is interested,
-- put into a transaction), the last transaction ID given out, and the last delivery error
-- (for the admin API). A service seen for the first time starts at the newest event.
CREATE TABLE appservice_positions (
    service_id    TEXT NOT NULL PRIMARY KEY,
    stream_pos    BIGINT NOT NULL,
    last_txn_id   BIGINT NOT NULL DEFAULT 0,
    last_error    TEXT NOT NULL DEFAULT '',
    last_error_ts BIGINT NOT NULL DEFAULT 0
);

-- appservice_txns are the transactions built but not yet acknowledged, sent in txn_id
-- order. body is the exact JSON sent, so that a retry repeats the same transaction under
-- the same ID. The row and the position move in one database transaction: nothing is
-- lost, skipped or put into two transactions, across restarts too.
CREATE TABLE appservice_txns (
    service_id TEXT NOT NULL,
    txn_id     BIGINT NOT NULL,
    body       TEXT NOT NULL,
    num_events INTEGER NOT NULL,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (service_id, txn_id)
);

-- Services that receive ephemeral data follow the receipts of every room.
CREATE INDEX receipts_by_stream ON receipts (stream_pos);

-- appservice_room_directory holds the rooms application services published in their
-- networks' room directories (PUT /directory/list/appservice/{networkId}/{roomId}),
-- listed by /publicRooms with third_party_instance_id or include_all_networks.
CREATE TABLE appservice_room_directory (
    service_id TEXT NOT NULL,
    network_id TEXT NOT NULL,
    room_nid   BIGINT NOT NULL,
    PRIMARY KEY (service_id, network_id, room_nid)
);
