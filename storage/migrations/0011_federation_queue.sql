-- The federation outbox: what federationapi's sender still has to send to each destination
-- server, drained in queue_pos order, at most 50 PDUs and 100 EDUs per transaction (the
-- server-server API's limits). A PDU row is written in the transaction that stores its event,
-- so an event is queued exactly when it is committed; a row is deleted once the destination
-- has answered 200 to the transaction that carried it.
--
-- txn_id is '' while a row waits, and the ID of the transaction that carries it once the
-- sender has put it in a batch: a failed transaction is retried with the same ID and exactly
-- the same rows, also after a restart, as the spec requires.
CREATE TABLE federation_queue_pdus (
    queue_pos   INTEGER PRIMARY KEY AUTOINCREMENT,
    destination TEXT NOT NULL,
    event_nid   BIGINT NOT NULL,
    txn_id      TEXT NOT NULL DEFAULT '',
    UNIQUE (destination, event_nid)
);
CREATE INDEX federation_queue_pdus_destination ON federation_queue_pdus (destination, txn_id, queue_pos);

-- content is the EDU's content, JSON.
CREATE TABLE federation_queue_edus (
    queue_pos   INTEGER PRIMARY KEY AUTOINCREMENT,
    destination TEXT NOT NULL,
    edu_type    TEXT NOT NULL,
    content     TEXT NOT NULL,
    txn_id      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX federation_queue_edus_destination ON federation_queue_edus (destination, txn_id, queue_pos);

-- federation_destinations is the sender's state per destination: the transaction in flight
-- (txn_id, '' when none), and the backoff after failed attempts: failures in a row and the
-- time (ms) before which the next attempt must not start. A success resets both.
CREATE TABLE federation_destinations (
    destination TEXT NOT NULL PRIMARY KEY,
    txn_id      TEXT NOT NULL DEFAULT '',
    failures    BIGINT NOT NULL DEFAULT 0,
    retry_ts    BIGINT NOT NULL DEFAULT 0
);
