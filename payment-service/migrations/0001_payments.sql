-- One payment per order: the unique order_id settles redelivered
-- order_created events racing each other.
CREATE TABLE payments (
    id              BIGSERIAL PRIMARY KEY,
    order_id        BIGINT NOT NULL UNIQUE,
    user_id         BIGINT NOT NULL,
    amount          NUMERIC(12, 2) NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('succeeded', 'failed', 'refunded')),
    transaction_id  TEXT,
    reason          TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX payments_user_idx ON payments (user_id, id);

-- Orders seen cancelled: a success for one of them is refunded.
CREATE TABLE cancelled_orders (
    order_id      BIGINT PRIMARY KEY,
    cancelled_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
