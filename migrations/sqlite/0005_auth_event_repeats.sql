-- One auth-log row can stand for many identical refusals (the login guard sums
-- them up): how many, and the time of the last one (`at` is the first).
ALTER TABLE auth_events ADD COLUMN repeats INTEGER NOT NULL DEFAULT 1;
ALTER TABLE auth_events ADD COLUMN last_at INTEGER;
