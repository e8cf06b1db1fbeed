-- An `event_published` step takes its time when the relay marks the row,
-- as every other step does (clock_timestamp()), not from the relay
-- transaction's start (`sent_at` is now()), so a timeline's times rise
-- with its steps.
CREATE OR REPLACE FUNCTION order_step_published() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO order_steps (order_id, step, cause, event_id, event_type, trace_id)
    SELECT NEW.order_id, 'event_published', 'relay', NEW.event_id,
           NEW.event_type, NULLIF(split_part(NEW.traceparent, '-', 2), '')
    WHERE EXISTS (SELECT 1 FROM orders WHERE id = NEW.order_id);
    RETURN NULL;
END
$$;
