-- Orders and their lines. `status` is what the customer sees; `stock` is
-- where the order's units are at product-service, which is what the
-- recovery loop settles (commit a paid order's, release everyone else's).
CREATE TABLE orders (
    id                BIGSERIAL PRIMARY KEY,
    user_id           BIGINT NOT NULL,
    status            TEXT NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'paid', 'failed', 'cancelled', 'rejected')),
    -- unknown: ReserveStock not answered yet (it may hold units);
    -- held / committed / released: as product-service has them;
    -- none: nothing was ever held (refused or never asked).
    stock             TEXT NOT NULL DEFAULT 'unknown'
                      CHECK (stock IN ('unknown', 'held', 'committed', 'released', 'none')),
    -- From the reserved prices; NULL until stock is held.
    total_price       NUMERIC(14, 2),
    currency          TEXT NOT NULL DEFAULT 'USD',
    -- Why an order was rejected, failed or cancelled.
    reason            TEXT,
    -- For a rejection for lack of stock: the short product and its stock then.
    short_product_id  BIGINT,
    available_stock   INT,
    idempotency_key   TEXT,
    -- The request an idempotency key was first used with (its items).
    request_fingerprint TEXT,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- A key names one order of one user, however often it is sent.
    UNIQUE (user_id, idempotency_key)
);

CREATE INDEX orders_user_idx ON orders (user_id, id);
-- The recovery loop's work list: only orders whose saga is not finished.
CREATE INDEX orders_unsettled_idx ON orders (updated_at)
    WHERE status = 'pending' OR stock IN ('unknown', 'held');

CREATE TABLE order_items (
    order_id    BIGINT NOT NULL REFERENCES orders (id),
    product_id  BIGINT NOT NULL,
    quantity    INT NOT NULL CHECK (quantity > 0),
    -- The price reserved at product-service; NULL until then.
    unit_price  NUMERIC(12, 2),
    PRIMARY KEY (order_id, product_id)
);
