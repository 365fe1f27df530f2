-- Tenants: the operators (ISPs) one deployment serves. A NAS, a plan and a
-- voucher belong to one tenant; a voucher is looked up only in the tenant of
-- the NAS that asked, and its code is unique within its tenant. Tenant 1,
-- `default`, holds everything made before tenants existed and everything made
-- without --tenant, so a single-operator install never names one.
CREATE TABLE tenants (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);
INSERT INTO tenants (id, name, created_at)
VALUES (1, 'default', EXTRACT(EPOCH FROM now())::BIGINT);
SELECT setval(pg_get_serial_sequence('tenants', 'id'), 1);

ALTER TABLE nas ADD COLUMN tenant_id BIGINT NOT NULL DEFAULT 1 REFERENCES tenants (id);
ALTER TABLE plans ADD COLUMN tenant_id BIGINT NOT NULL DEFAULT 1 REFERENCES tenants (id);
ALTER TABLE plans ADD COLUMN sites TEXT;
ALTER TABLE vouchers ADD COLUMN tenant_id BIGINT NOT NULL DEFAULT 1 REFERENCES tenants (id);
ALTER TABLE vouchers DROP CONSTRAINT vouchers_code_key;
ALTER TABLE vouchers ADD CONSTRAINT vouchers_tenant_code_key UNIQUE (tenant_id, code);
