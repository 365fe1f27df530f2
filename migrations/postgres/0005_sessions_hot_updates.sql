-- A repeated login of a session and every Interim-Update rewrite a session row
-- (authorized_at, updated_at, counters). When no indexed column changes and the
-- page has room, PostgreSQL makes that a HOT update: no new entry in any index.
-- authorized_at and updated_at were indexed, so each such write added an entry
-- to all five indexes of the table, and the live-device read (every
-- Access-Request) walked a dead entry per past login of the voucher until vacuum
-- caught up.
--
-- The live-device read finds a voucher's live rows by (voucher_id, state, mac)
-- and reads authorized_at from the row it visits anyway.
DROP INDEX IF EXISTS sessions_voucher_live;
CREATE INDEX sessions_voucher_live ON sessions (voucher_id, state, mac);
-- The stale-session sweep selects live rows by state and filters them on
-- updated_at (an expression the index could not use); closed history is most of
-- the table and is left out.
DROP INDEX IF EXISTS sessions_state_updated;
CREATE INDEX sessions_live_state ON sessions (state) WHERE state IN ('open', 'authorized');
-- Closing a NAS's live sessions and the open-session gauge look up live rows
-- by NAS. Partial, so that it is no candidate for the (nas_id, acct_session_id)
-- lookups, which have their own unique index: a plan made while the table was
-- empty cannot pick it for them and then scan every row of the NAS.
DROP INDEX IF EXISTS sessions_nas_state;
CREATE INDEX sessions_nas_live ON sessions (nas_id, state) WHERE state IN ('open', 'authorized');
-- Room in each page for the new versions of its rows (HOT needs the same page).
ALTER TABLE sessions SET (fillfactor = 85);
-- Every accepted login rewrites its voucher row (see authorize.rs); the same.
ALTER TABLE vouchers SET (fillfactor = 90);
