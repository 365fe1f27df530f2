-- Sessions are keyed by NAS entry, router and Acct-Session-Id: several routers
-- may share one entry (a network, or one NAT address without identifiers), and
-- two of them may use the same Acct-Session-Id. `router` is the NAS-Identifier
-- (and, for a network entry, the source address); empty for an entry that
-- stands for one router, and on rows stored before, which count as every
-- router's. The key's columns are in this order so that its index also
-- serves lookups by (NAS, Acct-Session-Id) for every router, as accounting
-- reads them.
ALTER TABLE sessions ADD COLUMN router TEXT NOT NULL DEFAULT '';
ALTER TABLE sessions DROP CONSTRAINT sessions_nas_id_acct_session_id_key;
ALTER TABLE sessions ADD CONSTRAINT sessions_nas_router_session_key
    UNIQUE (nas_id, acct_session_id, router);
