-- Durable broadcasts (issue 15): one row per broadcast instead of one command row per
-- device written before the first push. Every device registered when a broadcast was
-- made (devices.ctime <= created_at) has it pending until its kiosk acknowledges its
-- copy; the acknowledgements are recorded as they come, one row per device that acked.
-- A device's copy has a wire id of its own derived from (broadcast id, device id), so
-- it never collides with a device_commands id (see kioskd_actors::ports::broadcast_copy_id).
CREATE TABLE broadcasts (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT    NOT NULL,
    text       TEXT,
    created_at INTEGER NOT NULL
);
CREATE INDEX broadcasts_created ON broadcasts (created_at);

CREATE TABLE broadcast_acks (
    device_id    INTEGER NOT NULL REFERENCES devices (id),
    broadcast_id INTEGER NOT NULL REFERENCES broadcasts (id),
    acked_at     INTEGER NOT NULL,
    PRIMARY KEY (device_id, broadcast_id)
);
