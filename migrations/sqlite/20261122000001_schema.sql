-- The SQLite schema: the same tables as Postgres, in SQLite's types. UUIDs are 16-byte BLOBs
-- (time-ordered v7, so they sort by creation); times are RFC 3339 text in UTC with up to six
-- fractional digits, which sorts as text in time order; JSON is text.
-- Applied migrations are never edited; change the schema with a new file.

CREATE TABLE events (
    id          BLOB PRIMARY KEY,
    -- Recognises repeats (VOD sends no event id): "NewFileUpload:<FileId>" or "<type>:sha256:<hex>".
    dedupe_key  TEXT NOT NULL UNIQUE,
    event_type  TEXT NOT NULL,
    format      TEXT NOT NULL CHECK (format IN ('v3', 'v2')),
    file_id     TEXT,
    received_at TEXT NOT NULL,
    raw_body    BLOB NOT NULL,
    body        TEXT NOT NULL,
    headers     TEXT NOT NULL DEFAULT '{}',
    client_addr TEXT
);

-- Keyset pagination, newest first, overall and per filter.
CREATE INDEX events_received ON events (received_at DESC, id DESC);
CREATE INDEX events_type_received ON events (event_type, received_at DESC, id DESC);
CREATE INDEX events_file_received ON events (file_id, received_at DESC, id DESC) WHERE file_id IS NOT NULL;

CREATE TABLE uploads (
    file_id                    TEXT PRIMARY KEY,
    media_url                  TEXT,
    source_type                TEXT,
    source_context             TEXT,
    procedure_task_id          TEXT,
    review_audio_video_task_id TEXT,
    name                       TEXT,
    media_type                 TEXT,
    cover_url                  TEXT,
    storage_region             TEXT,
    class_id                   INTEGER,
    size_bytes                 INTEGER,
    duration_seconds           REAL,
    media_created_at           TEXT,
    first_event_id             BLOB NOT NULL REFERENCES events (id),
    received_at                TEXT NOT NULL,
    updated_at                 TEXT NOT NULL
);

-- SQLite has no index entry size limit, so filter columns are indexed whole.
CREATE INDEX uploads_received ON uploads (received_at DESC, file_id DESC);
CREATE INDEX uploads_source_context ON uploads (source_context, received_at DESC, file_id DESC);
CREATE INDEX uploads_source_type ON uploads (source_type, received_at DESC, file_id DESC);
CREATE INDEX uploads_procedure_task ON uploads (procedure_task_id, received_at DESC, file_id DESC)
    WHERE procedure_task_id IS NOT NULL;
CREATE INDEX uploads_storage_region ON uploads (storage_region, received_at DESC, file_id DESC);

CREATE TABLE api_tokens (
    id         BLOB PRIMARY KEY,
    name       TEXT NOT NULL,
    -- SHA-256 of the token; the token itself is shown once and never stored.
    token_hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);

CREATE UNIQUE INDEX api_tokens_active_name ON api_tokens (name) WHERE revoked_at IS NULL;

CREATE TABLE subscriptions (
    id                         BLOB PRIMARY KEY,
    url                        TEXT NOT NULL,
    -- A JSON array of event types; empty means every event type.
    event_types                TEXT NOT NULL DEFAULT '[]',
    description                TEXT,
    enabled                    INTEGER NOT NULL DEFAULT 1,
    disabled_reason            TEXT,
    -- "whsec_..." in clear, or "enc1:..." when VODHOOK_SECRET_KEY encrypts secrets at rest.
    secret                     TEXT NOT NULL,
    previous_secret            TEXT,
    previous_secret_expires_at TEXT,
    created_at                 TEXT NOT NULL,
    updated_at                 TEXT NOT NULL
);

CREATE INDEX subscriptions_created ON subscriptions (created_at DESC, id DESC);

CREATE TABLE deliveries (
    id               BLOB PRIMARY KEY,
    event_id         BLOB NOT NULL REFERENCES events (id),
    -- Exactly one target: an HTTP subscription or a named in-process handler.
    subscription_id  BLOB REFERENCES subscriptions (id) ON DELETE CASCADE,
    handler          TEXT,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'dead', 'paused')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    next_attempt_at  TEXT NOT NULL,
    -- Set while a worker holds the claim (the lease end); cleared when it settles.
    claimed_until    TEXT,
    last_error       TEXT,
    last_http_status INTEGER,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    completed_at     TEXT,
    CHECK ((subscription_id IS NULL) <> (handler IS NULL))
);

CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_created ON deliveries (created_at DESC, id DESC);
CREATE INDEX deliveries_subscription ON deliveries (subscription_id, created_at DESC, id DESC) WHERE subscription_id IS NOT NULL;
CREATE INDEX deliveries_handler ON deliveries (handler, created_at DESC, id DESC) WHERE handler IS NOT NULL;
CREATE INDEX deliveries_event ON deliveries (event_id);
CREATE INDEX deliveries_dead ON deliveries (subscription_id, handler) WHERE status = 'dead';

CREATE TABLE delivery_attempts (
    id            INTEGER PRIMARY KEY,
    delivery_id   BLOB NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    attempt       INTEGER NOT NULL,
    started_at    TEXT NOT NULL,
    duration_ms   REAL NOT NULL,
    http_status   INTEGER,
    error         TEXT,
    -- At most 4 KiB of what the target answered.
    response_body TEXT
);

CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery_id, attempt);
