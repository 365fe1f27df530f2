-- Tenants: the operators (ISPs) one deployment serves. A NAS, a plan and a
-- voucher belong to one tenant; a voucher is looked up only in the tenant of
-- the NAS that asked, and its code is unique within its tenant. Tenant 1,
-- `default`, holds everything made before tenants existed and everything made
-- without --tenant, so a single-operator install never names one.
CREATE TABLE tenants (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);
INSERT INTO tenants (id, name, created_at) VALUES (1, 'default', CAST(strftime('%s', 'now') AS INTEGER));

-- SQLite cannot add a column with both REFERENCES and a non-NULL default: the
-- tenant is checked by the code that writes it.
ALTER TABLE nas ADD COLUMN tenant_id INTEGER NOT NULL DEFAULT 1;
ALTER TABLE plans ADD COLUMN tenant_id INTEGER NOT NULL DEFAULT 1;

-- Plans may be valid at some sites only (comma-separated site names; NULL:
-- everywhere).
ALTER TABLE plans ADD COLUMN sites TEXT;

-- Voucher codes become unique per tenant: SQLite cannot drop a UNIQUE
-- constraint, so the table is rebuilt (migrations run with foreign keys off,
-- and are checked before commit). Ids are kept, and so is the AUTOINCREMENT
-- high-water mark: the Class attribute carries voucher ids, never reused.
CREATE TABLE vouchers_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id INTEGER NOT NULL DEFAULT 1 REFERENCES tenants (id),
    code TEXT NOT NULL,
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
    created_at INTEGER NOT NULL,
    UNIQUE (tenant_id, code)
);
INSERT INTO vouchers_new (id, tenant_id, code, password, plan_id, site, state, first_login_at,
    valid_until, used_seconds, used_bytes, bound_mac, batch, created_at)
SELECT id, 1, code, password, plan_id, site, state, first_login_at, valid_until, used_seconds,
    used_bytes, bound_mac, batch, created_at FROM vouchers;
-- The copy made a sqlite_sequence row at the highest id copied; the old
-- table's mark may be higher (vouchers deleted since).
UPDATE sqlite_sequence
   SET seq = (SELECT seq FROM sqlite_sequence WHERE name = 'vouchers')
 WHERE name = 'vouchers_new'
   AND seq < (SELECT seq FROM sqlite_sequence WHERE name = 'vouchers');
INSERT INTO sqlite_sequence (name, seq)
SELECT 'vouchers_new', seq FROM sqlite_sequence WHERE name = 'vouchers'
   AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'vouchers_new');
DROP TABLE vouchers;
ALTER TABLE vouchers_new RENAME TO vouchers;
CREATE INDEX vouchers_plan ON vouchers (plan_id);
CREATE INDEX vouchers_batch ON vouchers (batch);
