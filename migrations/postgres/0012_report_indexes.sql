-- The console's reports (issue 12) read the ledger and sessions by time over all users
-- and devices.
CREATE INDEX ledger_created ON ledger (created_at);
CREATE INDEX sessions_started ON sessions (started_at);
