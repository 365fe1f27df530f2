-- Sessions end when the voucher ends (RFC 5176 Disconnect and CoA).
-- Where the router's `/radius incoming` listens, when it is not the NAS's own
-- address (a CIDR entry, a router behind NAT).
ALTER TABLE nas ADD COLUMN coa_address TEXT;
-- Fair use: when the data quota is used up, slow the session to this
-- Mikrotik-Rate-Limit instead of ending it.
ALTER TABLE plans ADD COLUMN after_data_rate_limit TEXT;
-- When the server first asked the router to end the session, and the last
-- CoA/Disconnect outcome ("disconnect ack", "coa nak Session-Context-Not-Found", …).
ALTER TABLE sessions ADD COLUMN disconnect_requested_at INTEGER;
ALTER TABLE sessions ADD COLUMN coa_result TEXT;
-- Requests to send to routers, written in the transaction that decided them
-- (a revoke by the CLI, accounting that used a quota up, a plan change) and
-- sent by the running server, which polls this table. Durable: a server that
-- stops with requests pending or in flight sends them after its restart.
CREATE TABLE coa_requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id INTEGER NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    kind TEXT NOT NULL CHECK (kind IN ('disconnect', 'coa')),
    -- revoked, quota_used, fair_use, plan_changed
    reason TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sending', 'done')),
    created_at INTEGER NOT NULL,
    claimed_at INTEGER,
    done_at INTEGER,
    result TEXT
);
-- The worker's poll (pending, and claims never finished) and the pruning of
-- finished requests after a week.
CREATE INDEX coa_requests_state ON coa_requests (state, done_at);
CREATE INDEX coa_requests_session ON coa_requests (session_id, reason);
