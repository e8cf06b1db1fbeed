-- The customer's email (from their token) travels in order_created, so
-- notification-service can mail them without reading another service's data.
ALTER TABLE orders ADD COLUMN customer_email TEXT;
