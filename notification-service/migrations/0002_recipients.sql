-- Email addresses per order, learnt from order_created (which carries the
-- customer's email), so every notification of the order can be mailed.
CREATE TABLE order_recipients (
    order_id  BIGINT PRIMARY KEY,
    email     TEXT NOT NULL
);

ALTER TABLE notifications ADD COLUMN recipient TEXT;
