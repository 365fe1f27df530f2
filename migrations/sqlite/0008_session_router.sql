-- Sessions are keyed by NAS entry, router and Acct-Session-Id: several routers
-- may share one entry (a network, or one NAT address without identifiers), and
-- two of them may use the same Acct-Session-Id. `router` is the NAS-Identifier
-- (and, for a network entry, the source address); empty for an entry that
-- stands for one router, and on rows stored before, which count as every
-- router's. The key's columns are in this order so that its index also
-- serves lookups by (NAS, Acct-Session-Id) for every router, as accounting
-- reads them. SQLite cannot change a UNIQUE constraint: the table is rebuilt
-- (migrations run with foreign keys off, and are checked before commit).
CREATE TABLE sessions_new (
    id INTEGER PRIMARY KEY,
    nas_id INTEGER NOT NULL REFERENCES nas (id) ON DELETE CASCADE,
    router TEXT NOT NULL DEFAULT '',
    acct_session_id TEXT NOT NULL,
    username TEXT NOT NULL,
    voucher_id INTEGER REFERENCES vouchers (id) ON DELETE SET NULL,
    mac TEXT,
    framed_ip TEXT,
    state TEXT NOT NULL CHECK (state IN ('authorized', 'open', 'closed')),
    authorized_at INTEGER,
    started_at INTEGER,
    updated_at INTEGER NOT NULL,
    stopped_at INTEGER,
    session_time INTEGER NOT NULL DEFAULT 0,
    input_octets INTEGER NOT NULL DEFAULT 0,
    output_octets INTEGER NOT NULL DEFAULT 0,
    terminate_cause TEXT,
    interim_interval INTEGER,
    disconnect_requested_at INTEGER,
    coa_result TEXT,
    UNIQUE (nas_id, acct_session_id, router)
);
INSERT INTO sessions_new (id, nas_id, acct_session_id, username, voucher_id, mac, framed_ip,
    state, authorized_at, started_at, updated_at, stopped_at, session_time, input_octets,
    output_octets, terminate_cause, interim_interval, disconnect_requested_at, coa_result)
SELECT id, nas_id, acct_session_id, username, voucher_id, mac, framed_ip, state, authorized_at,
    started_at, updated_at, stopped_at, session_time, input_octets, output_octets,
    terminate_cause, interim_interval, disconnect_requested_at, coa_result FROM sessions;
DROP TABLE sessions;
ALTER TABLE sessions_new RENAME TO sessions;
CREATE INDEX sessions_voucher_live ON sessions (voucher_id, state, mac, authorized_at);
CREATE INDEX sessions_nas_state ON sessions (nas_id, state);
CREATE INDEX sessions_state_updated ON sessions (state, updated_at);
