-- Events for the ERP: an outbox written in the transaction of the change
-- (a voucher activated, used up or revoked; a session started or stopped),
-- read by `GET /api/v1/events` and delivered to webhooks. `object` is the
-- voucher or session as JSON text at the time of the change. `txid` is the
-- writing transaction's id: ids are taken before commit, so a reader pages
-- by (txid, id) and only past transactions that have all ended, and so
-- never skips an event that commits after a later id.
CREATE TABLE events (
    id BIGSERIAL PRIMARY KEY,
    tenant_id BIGINT NOT NULL,
    type TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    object TEXT NOT NULL,
    txid BIGINT NOT NULL DEFAULT (pg_current_xact_id()::text::bigint)
);
CREATE INDEX events_created ON events (created_at);
CREATE INDEX events_order ON events (txid, id);

-- Where events are POSTed. tenant_id NULL: every tenant's events. events:
-- the types it wants as ",a,b," (NULL: all). The secret signs each delivery.
CREATE TABLE webhooks (
    id BIGSERIAL PRIMARY KEY,
    tenant_id BIGINT REFERENCES tenants (id),
    url TEXT NOT NULL,
    events TEXT,
    secret TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- One row per webhook and event it wants, made when the event is written
-- (the trigger below), so a webhook hears of events from when it was added.
-- next_attempt_at doubles as the lease of a claimed delivery: a server that
-- stopped mid-attempt leaves it to be tried again when the lease runs out.
CREATE TABLE deliveries (
    id BIGSERIAL PRIMARY KEY,
    webhook_id BIGINT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_id BIGINT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    last_attempt_at BIGINT,
    last_status INTEGER,
    last_error TEXT,
    delivered_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX deliveries_due ON deliveries (state, next_attempt_at);
CREATE INDEX deliveries_webhook ON deliveries (webhook_id, id);
CREATE INDEX deliveries_event ON deliveries (event_id);

CREATE FUNCTION rrnet_events_fan_out() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO deliveries (webhook_id, event_id, next_attempt_at, created_at)
    SELECT w.id, NEW.id, NEW.created_at, NEW.created_at FROM webhooks w
    WHERE (w.tenant_id IS NULL OR w.tenant_id = NEW.tenant_id)
      AND (w.events IS NULL OR strpos(w.events, ',' || NEW.type || ',') > 0);
    RETURN NULL;
END;
$$;
CREATE TRIGGER events_fan_out AFTER INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION rrnet_events_fan_out();
