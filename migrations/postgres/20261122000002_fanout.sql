-- Fan-out: HTTP subscriptions, the delivery outbox (one row per event and target), and the attempt log.

-- Time-ordered UUIDs (version 7) for rows made in SQL: new ids land on the right edge of their
-- indexes instead of random pages, which keeps index writes (and WAL full-page images) down.
CREATE FUNCTION vodhook_uuid_v7() RETURNS uuid AS $$
    SELECT encode(
        set_bit(set_bit(
            overlay(uuid_send(gen_random_uuid())
                    PLACING substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                    FROM 1 FOR 6),
            52, 1), 53, 1),
        'hex')::uuid
$$ LANGUAGE sql VOLATILE;

CREATE TABLE subscriptions (
    id                         UUID PRIMARY KEY,
    url                        TEXT NOT NULL,
    -- Empty means every event type.
    event_types                TEXT[] NOT NULL DEFAULT '{}',
    description                TEXT,
    enabled                    BOOLEAN NOT NULL DEFAULT TRUE,
    disabled_reason            TEXT,
    -- "whsec_..." in clear, or "enc1:..." when VODHOOK_SECRET_KEY encrypts secrets at rest.
    secret                     TEXT NOT NULL,
    -- After a rotation the old secret keeps signing until it expires.
    previous_secret            TEXT,
    previous_secret_expires_at TIMESTAMPTZ,
    created_at                 TIMESTAMPTZ NOT NULL,
    updated_at                 TIMESTAMPTZ NOT NULL
);

CREATE INDEX subscriptions_created ON subscriptions (created_at DESC, id DESC);

CREATE TABLE deliveries (
    id              UUID PRIMARY KEY,
    event_id        UUID NOT NULL REFERENCES events (id),
    -- Exactly one target: an HTTP subscription or a named in-process handler.
    subscription_id UUID REFERENCES subscriptions (id) ON DELETE CASCADE,
    handler         TEXT,
    CHECK ((subscription_id IS NULL) <> (handler IS NULL)),
    -- paused: its subscription is disabled; resumed (pending, due now) when it is enabled again.
    status          TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'dead', 'paused')),
    -- Claims so far; a claim is a lease (claimed_until): a crashed claimant's delivery comes due
    -- again when it ends, and settling checks attempts as a fence.
    attempts        INT NOT NULL DEFAULT 0,
    max_attempts    INT NOT NULL,
    next_attempt_at TIMESTAMPTZ NOT NULL,
    -- Set while a worker holds the claim (the lease end); cleared when it settles.
    claimed_until   TIMESTAMPTZ,
    last_error      TEXT,
    last_http_status INT,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    completed_at    TIMESTAMPTZ
) WITH (fillfactor = 70); -- room for in-place (HOT) updates: a claim changes no indexed column

CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_created ON deliveries (created_at DESC, id DESC);
CREATE INDEX deliveries_subscription ON deliveries (subscription_id, created_at DESC, id DESC) WHERE subscription_id IS NOT NULL;
CREATE INDEX deliveries_handler ON deliveries (handler, created_at DESC, id DESC) WHERE handler IS NOT NULL;
CREATE INDEX deliveries_event ON deliveries (event_id);
CREATE INDEX deliveries_dead ON deliveries (subscription_id, handler) WHERE status = 'dead';

CREATE TABLE delivery_attempts (
    id            BIGSERIAL PRIMARY KEY,
    delivery_id   UUID NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    attempt       INT NOT NULL,
    started_at    TIMESTAMPTZ NOT NULL,
    duration_ms   DOUBLE PRECISION NOT NULL,
    http_status   INT,
    error         TEXT,
    -- At most 4 KiB of what the target answered.
    response_body TEXT
);

CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery_id, attempt);
