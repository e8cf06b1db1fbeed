-- An order's timeline (docs/saga.md, "The timeline"): one row per step of
-- its saga, written by the statement or transaction that takes the step,
-- so the timeline never disagrees with the order. `seq` is the order of
-- the steps: each is written after its transaction has locked the order
-- row, so one order's steps get their numbers in the order they happened.
CREATE TABLE order_steps (
    seq         BIGSERIAL PRIMARY KEY,
    order_id    BIGINT NOT NULL REFERENCES orders (id),
    step        TEXT NOT NULL CHECK (step IN (
                    'placed', 'stock_reserved', 'stock_refused', 'rejected',
                    'event_published', 'payment_received', 'paid', 'failed',
                    'cancelled', 'stock_committed', 'stock_released', 'refunded')),
    at          TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    -- What took the step: the customer's request or cancel, an event (its id
    -- and type below), the recovery loop, the payment timeout, or the relay.
    cause       TEXT NOT NULL CHECK (cause IN (
                    'request', 'customer_cancel', 'event', 'recovery',
                    'payment_timeout', 'relay')),
    -- The causing event, or for `event_published` the event published.
    event_id    UUID,
    event_type  TEXT,
    -- The trace the step was taken in (W3C trace id, 32 hex digits).
    trace_id    TEXT,
    -- What the step says beyond its name: a reason, a shortfall, an amount.
    detail      TEXT
);

CREATE INDEX order_steps_order_idx ON order_steps (order_id, seq);

-- `event_published` is written by the relay's own transaction, the one that
-- marks the outbox row sent after the broker acknowledged it: the relay is
-- shared by every service, and only this database keeps a timeline. A row
-- re-published after a crash is marked once, so it is one step. An outbox
-- row of no order here (none is written today) is skipped rather than
-- failing the relay's mark.
CREATE FUNCTION order_step_published() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO order_steps (order_id, step, at, cause, event_id, event_type, trace_id)
    SELECT NEW.order_id, 'event_published', NEW.sent_at, 'relay', NEW.event_id,
           NEW.event_type, NULLIF(split_part(NEW.traceparent, '-', 2), '')
    WHERE EXISTS (SELECT 1 FROM orders WHERE id = NEW.order_id);
    RETURN NULL;
END
$$;

CREATE TRIGGER outbox_published AFTER UPDATE OF sent_at ON outbox
    FOR EACH ROW WHEN (OLD.sent_at IS NULL AND NEW.sent_at IS NOT NULL)
    EXECUTE FUNCTION order_step_published();
