-- /ws/attendance (issue 5): which path last delivered a terminal command, and when the
-- bridge acknowledged receiving it. A command delivered over the WebSocket and not
-- acknowledged is delivered again when the bridge reconnects (non-destructive ones only);
-- the native poll re-sends only what it delivered itself.
-- via: 'bridge' (getCommand poll), 'native' (iclock getrequest), 'ws' (/ws/attendance);
-- NULL: not delivered yet (or delivered before this migration: treated as its channel).
ALTER TABLE terminal_commands ADD COLUMN via TEXT;
ALTER TABLE terminal_commands ADD COLUMN delivered_at BIGINT;
