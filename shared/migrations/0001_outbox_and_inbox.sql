-- The transactional outbox: a service inserts its events here in the same
-- transaction as the state change; the relay publishes them in id order.
CREATE TABLE outbox (
    id           BIGSERIAL PRIMARY KEY,
    event_id     UUID NOT NULL UNIQUE,
    -- The Kafka key: every event of one order lands on one partition.
    order_id     BIGINT NOT NULL,
    event_type   TEXT NOT NULL,
    -- The exact JSON published (TEXT, not JSONB, which would reorder keys).
    payload      TEXT NOT NULL,
    -- W3C trace context of the transaction that wrote the event.
    traceparent  TEXT,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    sent_at      TIMESTAMPTZ
);

CREATE INDEX outbox_unsent_idx ON outbox (id) WHERE sent_at IS NULL;
CREATE INDEX outbox_sent_idx ON outbox (sent_at) WHERE sent_at IS NOT NULL;

-- The inbox: an event's id is recorded in the same transaction as its
-- effect, so a redelivered event does nothing.
CREATE TABLE processed_events (
    event_id      UUID PRIMARY KEY,
    event_type    TEXT NOT NULL,
    processed_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
