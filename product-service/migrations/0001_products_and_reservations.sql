-- The catalogue. Stock can never go negative: the CHECK backs up the
-- conditional UPDATE that reserves stock.
CREATE TABLE products (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    price       NUMERIC(12, 2) NOT NULL CHECK (price > 0),
    stock       INTEGER NOT NULL CHECK (stock >= 0),
    -- Bumped on every change (edits and stock movements): optimistic
    -- concurrency for PUT, the ETag, and the cache's ordering of writes.
    version     BIGINT NOT NULL DEFAULT 1,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Soft delete: reservations still point at the row, and a release after
    -- a delete must still find it to give the units back.
    deleted_at  TIMESTAMPTZ
);

CREATE INDEX products_live_idx ON products (id) WHERE deleted_at IS NULL;

-- One row per order id that ever asked for stock: the outcome a repeated
-- ReserveStock / ReleaseStock / CommitStock returns (idempotency).
CREATE TABLE stock_reservations (
    order_id          BIGINT PRIMARY KEY,
    status            TEXT NOT NULL
                      CHECK (status IN ('reserved', 'insufficient', 'released', 'committed')),
    -- For 'insufficient': the first short product and its stock at the time.
    short_product_id  BIGINT,
    available_stock   INTEGER,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX stock_reservations_live_idx ON stock_reservations (created_at)
    WHERE status = 'reserved';

-- The units an order holds (or held), at the price it was reserved at.
CREATE TABLE stock_reservation_items (
    order_id    BIGINT NOT NULL REFERENCES stock_reservations (order_id),
    product_id  BIGINT NOT NULL REFERENCES products (id),
    quantity    INTEGER NOT NULL CHECK (quantity > 0),
    unit_price  NUMERIC(12, 2) NOT NULL,
    PRIMARY KEY (order_id, product_id)
);

CREATE INDEX stock_reservation_items_product_idx ON stock_reservation_items (product_id);
