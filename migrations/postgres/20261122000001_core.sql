-- Core schema: every received event, one upload record per media file, and stored API tokens.
-- Applied migrations are never edited; change the schema with a new file.

CREATE TABLE events (
    id          UUID PRIMARY KEY,
    -- Recognises repeats (VOD sends no event id): "NewFileUpload:<FileId>" or "<type>:sha256:<hex>";
    -- the parser bounds event types and FileIds to 256 bytes, so it always fits a btree entry.
    dedupe_key  TEXT COLLATE "C" NOT NULL UNIQUE,
    event_type  TEXT NOT NULL,
    format      TEXT NOT NULL CHECK (format IN ('v3', 'v2')),
    file_id     TEXT COLLATE "C",
    received_at TIMESTAMPTZ NOT NULL,
    raw_body    BYTEA NOT NULL,
    body        JSONB NOT NULL,
    headers     JSONB NOT NULL DEFAULT '{}'::jsonb,
    client_addr TEXT
);

-- Keyset pagination, newest first, overall and per filter.
CREATE INDEX events_received ON events (received_at DESC, id DESC);
CREATE INDEX events_type_received ON events (event_type, received_at DESC, id DESC);
CREATE INDEX events_file_received ON events (file_id, received_at DESC, id DESC) WHERE file_id IS NOT NULL;

CREATE TABLE uploads (
    file_id                    TEXT COLLATE "C" PRIMARY KEY,
    media_url                  TEXT,
    source_type                TEXT,
    source_context             TEXT,
    procedure_task_id          TEXT,
    review_audio_video_task_id TEXT,
    name                       TEXT,
    media_type                 TEXT,
    cover_url                  TEXT,
    storage_region             TEXT,
    class_id                   BIGINT,
    size_bytes                 BIGINT,
    duration_seconds           DOUBLE PRECISION,
    media_created_at           TIMESTAMPTZ,
    first_event_id             UUID NOT NULL REFERENCES events (id),
    received_at                TIMESTAMPTZ NOT NULL,
    updated_at                 TIMESTAMPTZ NOT NULL
);

-- Filter columns hold whatever VOD (or a stranger) sends, and a btree entry must stay under 2704
-- bytes, so they are indexed by their first 256 characters; queries compare that prefix and then
-- the whole value (see storage/uploads.rs).
CREATE INDEX uploads_received ON uploads (received_at DESC, file_id DESC);
CREATE INDEX uploads_source_context ON uploads (left(source_context, 256), received_at DESC, file_id DESC);
CREATE INDEX uploads_source_type ON uploads (left(source_type, 256), received_at DESC, file_id DESC);
CREATE INDEX uploads_procedure_task ON uploads (left(procedure_task_id, 256), received_at DESC, file_id DESC)
    WHERE procedure_task_id IS NOT NULL;
CREATE INDEX uploads_storage_region ON uploads (left(storage_region, 256), received_at DESC, file_id DESC);

CREATE TABLE api_tokens (
    id         UUID PRIMARY KEY,
    name       TEXT NOT NULL,
    -- SHA-256 of the token; the token itself is shown once and never stored.
    token_hash TEXT NOT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL,
    revoked_at TIMESTAMPTZ
);

CREATE UNIQUE INDEX api_tokens_active_name ON api_tokens (name) WHERE revoked_at IS NULL;
