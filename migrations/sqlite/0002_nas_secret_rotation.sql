-- A NAS secret being rotated: the previous secret stays valid until the given
-- time, so routers can be switched to the new one without a gap.
ALTER TABLE nas ADD COLUMN previous_secret TEXT;
ALTER TABLE nas ADD COLUMN previous_secret_until BIGINT;
