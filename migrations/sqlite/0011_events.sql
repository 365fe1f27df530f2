-- Events for the ERP: an outbox written in the transaction of the change
-- (a voucher activated, used up or revoked; a session started or stopped),
-- read by `GET /api/v1/events` and delivered to webhooks. `object` is the
-- voucher or session as JSON at the time of the change.
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id INTEGER NOT NULL,
    type TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    object TEXT NOT NULL
);
CREATE INDEX events_created ON events (created_at);
CREATE INDEX events_tenant ON events (tenant_id, id);

-- Where events are POSTed. tenant_id NULL: every tenant's events. events:
-- the types it wants as ",a,b," (NULL: all). The secret signs each delivery.
CREATE TABLE webhooks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id INTEGER REFERENCES tenants (id),
    url TEXT NOT NULL,
    events TEXT,
    secret TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

-- One row per webhook and event it wants, made when the event is written
-- (the trigger below), so a webhook hears of events from when it was added.
-- next_attempt_at doubles as the lease of a claimed delivery: a server that
-- stopped mid-attempt leaves it to be tried again when the lease runs out.
CREATE TABLE deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id INTEGER NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_id INTEGER NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_attempt_at INTEGER,
    last_status INTEGER,
    last_error TEXT,
    delivered_at INTEGER,
    created_at INTEGER NOT NULL
);
CREATE INDEX deliveries_due ON deliveries (state, next_attempt_at);
CREATE INDEX deliveries_webhook ON deliveries (webhook_id, id);
CREATE INDEX deliveries_event ON deliveries (event_id);

CREATE TRIGGER events_fan_out AFTER INSERT ON events
BEGIN
    INSERT INTO deliveries (webhook_id, event_id, next_attempt_at, created_at)
    SELECT w.id, NEW.id, NEW.created_at, NEW.created_at FROM webhooks w
    WHERE (w.tenant_id IS NULL OR w.tenant_id = NEW.tenant_id)
      AND (w.events IS NULL OR instr(w.events, ',' || NEW.type || ',') > 0);
END;
