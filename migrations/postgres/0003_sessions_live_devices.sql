-- The live devices of a voucher are read on every Access-Request. This index
-- covers that read (state, MAC and authorization time are in the index), so it
-- touches no table rows however many logins a voucher had in the last minute.
DROP INDEX IF EXISTS sessions_voucher_state;
CREATE INDEX sessions_voucher_live ON sessions (voucher_id, state, mac, authorized_at);
