-- rrnet-radius schema, SQLite flavour. Keep in step with migrations/postgres.
-- Timestamps are Unix seconds (UTC) and counters are 64-bit integers, exactly as
-- on PostgreSQL, so both backends share their SQL text. Booleans are 0/1.

CREATE TABLE nas (
    -- AUTOINCREMENT: auth_events keep nas_id after a NAS is removed, so ids are never reused.
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    -- An address or CIDR in text form, e.g. 192.0.2.1 or 10.0.0.0/8.
    address TEXT NOT NULL,
    secret TEXT NOT NULL,
    require_message_authenticator INTEGER NOT NULL DEFAULT 1,
    coa_port INTEGER NOT NULL DEFAULT 3799,
    site TEXT,
    created_at INTEGER NOT NULL
);

CREATE TABLE plans (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    time_quota INTEGER,
    validity INTEGER,
    expires_at INTEGER,
    data_quota INTEGER,
    rate_limit TEXT,
    shared_users INTEGER NOT NULL DEFAULT 1 CHECK (shared_users >= 1),
    mac_lock INTEGER NOT NULL DEFAULT 0,
    idle_timeout INTEGER,
    interim_interval INTEGER,
    mikrotik_group TEXT,
    address_list TEXT,
    price TEXT,
    created_at INTEGER NOT NULL
);

CREATE TABLE vouchers (
    -- AUTOINCREMENT: the Class attribute carries the voucher id, so an id must never
    -- be handed to a second voucher.
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    code TEXT NOT NULL UNIQUE,
    password TEXT NOT NULL,
    plan_id INTEGER NOT NULL REFERENCES plans (id),
    site TEXT,
    state TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'revoked')),
    first_login_at INTEGER,
    valid_until INTEGER,
    used_seconds INTEGER NOT NULL DEFAULT 0,
    used_bytes INTEGER NOT NULL DEFAULT 0,
    bound_mac TEXT,
    batch TEXT,
    created_at INTEGER NOT NULL
);
CREATE INDEX vouchers_plan ON vouchers (plan_id);
CREATE INDEX vouchers_batch ON vouchers (batch);

CREATE TABLE sessions (
    id INTEGER PRIMARY KEY,
    nas_id INTEGER NOT NULL REFERENCES nas (id) ON DELETE CASCADE,
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
    UNIQUE (nas_id, acct_session_id)
);
-- Live devices of a voucher (shared-users check, every Access-Request).
CREATE INDEX sessions_voucher_state ON sessions (voucher_id, state);
-- Closing a NAS's sessions (reboot, Accounting-On/Off), open-session gauge.
CREATE INDEX sessions_nas_state ON sessions (nas_id, state);
-- Stale-session sweep: live rows by age, without scanning closed history.
CREATE INDEX sessions_state_updated ON sessions (state, updated_at);

CREATE TABLE auth_events (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    -- No foreign key: the log outlives a removed NAS and keeps its name.
    nas_id INTEGER NOT NULL,
    nas_name TEXT NOT NULL,
    username TEXT NOT NULL,
    mac TEXT,
    result TEXT NOT NULL,
    reason TEXT
);
CREATE INDEX auth_events_at ON auth_events (at);
CREATE INDEX auth_events_username_at ON auth_events (username, at);

CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT INTO meta (key, value) VALUES ('nas_generation', 0);
