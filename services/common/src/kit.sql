-- The service kit's tables, created in each service's own schema by `migrate`.
CREATE TABLE IF NOT EXISTS "{schema}".outbox (
    id            bigserial PRIMARY KEY,
    event_id      uuid        NOT NULL UNIQUE,
    event_type    text        NOT NULL,
    aggregate_id  text        NOT NULL,
    envelope      bytea       NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    published_at  timestamptz
);
CREATE INDEX IF NOT EXISTS outbox_unpublished ON "{schema}".outbox (id) WHERE published_at IS NULL;
CREATE INDEX IF NOT EXISTS outbox_created_at ON "{schema}".outbox (created_at);
-- The publish sequence (SPEC 2, events): gap-free per service, given by the relay's leader when it
-- publishes a row, and the row's stream entry id (`<seq>-0`). Rows published before it existed
-- have none.
ALTER TABLE "{schema}".outbox ADD COLUMN IF NOT EXISTS seq bigint;
CREATE UNIQUE INDEX IF NOT EXISTS outbox_seq ON "{schema}".outbox (seq);
CREATE TABLE IF NOT EXISTS "{schema}".outbox_sequence (
    one       boolean PRIMARY KEY DEFAULT true CHECK (one),
    last_seq  bigint  NOT NULL
);
INSERT INTO "{schema}".outbox_sequence (last_seq) VALUES (0) ON CONFLICT DO NOTHING;

CREATE TABLE IF NOT EXISTS "{schema}".idempotency_keys (
    scope         text        NOT NULL,
    key           text        NOT NULL,
    request_hash  bytea       NOT NULL,
    response      bytea,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);
CREATE INDEX IF NOT EXISTS idempotency_keys_created_at ON "{schema}".idempotency_keys (created_at);
