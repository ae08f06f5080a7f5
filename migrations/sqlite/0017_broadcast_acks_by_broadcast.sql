-- Broadcast acknowledgements keyed by (broadcast, device), in one B-tree (issue 15):
-- a broadcast's acks arrive in device order (the fan-out goes in device order), so
-- each batch is written as a run of neighbouring rows at the table's end, where the
-- old table (a rowid table plus a (device, broadcast) index) had every batch touch
-- pages all over its index. "Is X's copy of B acknowledged" stays one key lookup.
CREATE TABLE broadcast_acks_by_broadcast (
    broadcast_id INTEGER NOT NULL REFERENCES broadcasts (id),
    device_id    INTEGER NOT NULL REFERENCES devices (id),
    acked_at     INTEGER NOT NULL,
    PRIMARY KEY (broadcast_id, device_id)
) WITHOUT ROWID;
INSERT INTO broadcast_acks_by_broadcast (broadcast_id, device_id, acked_at)
    SELECT broadcast_id, device_id, acked_at FROM broadcast_acks;
DROP TABLE broadcast_acks;
ALTER TABLE broadcast_acks_by_broadcast RENAME TO broadcast_acks;
