-- Broadcast acknowledgements keyed by (broadcast, device) (issue 15): a broadcast's acks
-- arrive in device order (the fan-out goes in device order), so each batch goes into
-- the key's index as a run of neighbouring entries at its end. "Is X's copy of B
-- acknowledged" stays one key lookup. (SQLite's 0017 makes the same key its table's.)
ALTER TABLE broadcast_acks DROP CONSTRAINT broadcast_acks_pkey;
ALTER TABLE broadcast_acks ADD PRIMARY KEY (broadcast_id, device_id);
