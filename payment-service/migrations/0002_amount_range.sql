-- A payment is of one order's total: its column holds every total an order
-- may have (shared::money::MAX_ORDER_TOTAL, as orders.total_price does).
-- Widening a NUMERIC's precision rewrites no rows.
ALTER TABLE payments ALTER COLUMN amount TYPE NUMERIC(14, 2);
