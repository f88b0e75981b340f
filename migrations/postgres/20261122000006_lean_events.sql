-- Ingest cost. An event's body is kept once, as the bytes VOD sent: the parsed jsonb copy cost
-- Postgres a JSON parse and a second compressed copy per event, and reads now parse the raw
-- bytes instead (rows written before this keep their copy, which reads still use). The raw body
-- is compressed with lz4 where the server has it, about twice as fast to write as pglz.
ALTER TABLE events ALTER COLUMN body DROP NOT NULL;

DO $$
BEGIN
    EXECUTE 'ALTER TABLE events ALTER COLUMN raw_body SET COMPRESSION lz4';
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'lz4 is not available (%): event bodies keep the default compression', SQLERRM;
END
$$;
