-- The recovery loop's backoff per order: a settle (or a reservation it
-- retries) that failed is tried again only after `recovery_after`, which
-- doubles with each failure, so orders it cannot finish yet (product-service
-- down, an order it does not know) never crowd out the others.
ALTER TABLE orders
    ADD COLUMN recovery_attempts INT NOT NULL DEFAULT 0,
    ADD COLUMN recovery_after TIMESTAMPTZ;

-- The payment-timeout scan: pending orders whose stock is held, oldest first.
CREATE INDEX orders_awaiting_payment_idx ON orders (updated_at)
    WHERE status = 'pending' AND stock = 'held';
