-- Transactional outbox: rows are written with the domain change and deleted by the relay
-- once they are on the Redis stream.
CREATE TABLE IF NOT EXISTS outbox (
    id           bigserial   PRIMARY KEY,
    topic        text        NOT NULL,
    aggregate_id bigint,
    payload      bytea       NOT NULL,
    traceparent  text,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- Events a consumer of this service has applied, so redelivery has no effect.
CREATE TABLE IF NOT EXISTS processed_events (
    consumer     text        NOT NULL,
    event_id     text        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
