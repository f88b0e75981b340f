-- The upload record follows its file: task-flow progress (ProcedureStateChanged) and deletion.

ALTER TABLE uploads ADD COLUMN processing_status TEXT
    CHECK (processing_status IN ('processing', 'finished', 'failed'));
ALTER TABLE uploads ADD COLUMN processing_task_id TEXT;
-- Orders the states of one task (VOD sends no time): a state only replaces a lower rank.
ALTER TABLE uploads ADD COLUMN processing_rank INTEGER;
ALTER TABLE uploads ADD COLUMN processing_results TEXT;
ALTER TABLE uploads ADD COLUMN session_context TEXT;
ALTER TABLE uploads ADD COLUMN processing_updated_at TEXT;
ALTER TABLE uploads ADD COLUMN deleted_at TEXT;

CREATE INDEX uploads_processing ON uploads (processing_status, received_at DESC, file_id DESC)
    WHERE processing_status IS NOT NULL;
CREATE INDEX uploads_deleted ON uploads (received_at DESC, file_id DESC) WHERE deleted_at IS NOT NULL;
