-- Bearer tokens of the management API (/api/v1/*). Only the SHA-256 of a
-- token is kept (hex); the token itself is shown once, by `token add`. A token
-- with a tenant sees and changes only that tenant; without one it is
-- operator-wide. Revoking deletes the row.
CREATE TABLE api_tokens (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    tenant_id BIGINT REFERENCES tenants (id),
    read_only BOOLEAN NOT NULL DEFAULT FALSE,
    token_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);
-- Answers to POSTs sent with an Idempotency-Key, per token: a retry with the
-- same key gets the first answer instead of doing the work again. `status`
-- is NULL while the first request is still being worked on.
CREATE TABLE api_idempotency (
    token_id BIGINT NOT NULL REFERENCES api_tokens (id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status INTEGER,
    body TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (token_id, key)
);
