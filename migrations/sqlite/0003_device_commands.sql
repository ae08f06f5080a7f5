-- Operator commands for kiosks (restart, message, lock, ...). A command stays pending
-- until the kiosk acknowledges it over its WebSocket; pending ones are re-sent on every
-- reconnect and survive restarts.
CREATE TABLE device_commands (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id  INTEGER NOT NULL REFERENCES devices (id),
    name       TEXT    NOT NULL,
    text       TEXT,
    created_at INTEGER NOT NULL,
    acked_at   INTEGER
);
CREATE INDEX device_commands_pending ON device_commands (device_id, id) WHERE acked_at IS NULL;
